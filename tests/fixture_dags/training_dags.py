"""Training DAGs for the operator tests: the same job run clean, evicted with SIGTERM, and killed with SIGKILL."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset

from mlk8s_airflow.operators.training import TrainingOperator

OUT = os.environ.get("MLK8S_TEST_OUT", "/tmp/mlk8s-test-out")
MODEL = Asset(name="test_digits_model", uri="file:///tmp/mlk8s-test-out/models/digits")
SCENARIOS: dict[str, dict] = {
    "train_clean": {},
    "train_sigterm": {"local_disruption": {"signal": "SIGTERM", "after_log": "checkpoint committed step=40 "}},
    "train_sigkill": {"local_disruption": {"signal": "SIGKILL", "after_log": "progress .*step=70/"}},
}

for _dag_id, _kwargs in SCENARIOS.items():
    with DAG(_dag_id, schedule=None, start_date=pendulum.datetime(2025, 1, 1), catchup=False, tags=["test"]) as _dag:
        TrainingOperator(
            task_id="train",
            image="ghcr.io/acme/mlk8s:0.1.0",
            checkpoint_uri=f"{OUT}/{_dag_id}/{{{{ run_id }}}}/checkpoints",
            output_uri=f"{OUT}/{_dag_id}/{{{{ run_id }}}}/model",
            epochs=3,
            seed=7,
            checkpoint_every_steps=20,
            extra_args=["--log-every-steps", "10", "--heartbeat-seconds", "0"],
            model_asset=MODEL,
            retries=0,
            **_kwargs,
        )
    globals()[_dag_id] = _dag
