"""Nightly retrain: documents -> Ray preprocessing (features + embeddings) -> checkpointed torch training ->
evaluation against the published model -> publication when the new model is not worse.

Runs unchanged on Kubernetes (``[mlk8s] backend = kubernetes``, the Helm values) and locally
(``backend = local``: ``make up``, ``make demo``): the operators build the same pod specs either way.

Every path is keyed by the run (``{{ run_id | run_key }}``), so a run triggered without a logical date works,
two runs of one day never share data, and a rerun of a run (a cleared task) redoes its own data in place.
The features are one Delta table partitioned by ``run_key``: preprocessing replaces this run's partition, and
training and evaluation read that partition at the Delta version preprocessing committed (its XCom).
The first task refuses conf keys no Param declares. The model Asset gets an event only from ``publish``,
which runs only when ``evaluate`` found the candidate not worse than the live model on the same held-out
rows; ``live_model`` says which model is live either way. This file only wires tasks.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from mlk8s_airflow.dag_params import ConfCheckOperator, number_param
from mlk8s_airflow.operators.model_registry import EvaluateModelOperator, PublishModelOperator, live_model_report
from mlk8s_airflow.operators.pod import PodTaskOperator
from mlk8s_airflow.operators.preprocessing import PreprocessingOperator
from mlk8s_airflow.operators.training import TrainingOperator
from mlk8s_airflow.run_keys import RUN_KEY_FILTERS

# Read once at parse time (cheap): where this deployment keeps its data. s3:// or gs:// in a cluster.
DATA_ROOT = os.environ.get("MLK8S_DATA_ROOT", "s3://mlk8s-data")
IMAGE = os.environ.get("MLK8S_IMAGE", "ghcr.io/mlk8s/mlk8s:0.1.0")

FEATURES = Asset(name="document_features", uri=f"{DATA_ROOT}/features")
MODEL = Asset(name="document_classifier", uri=f"{DATA_ROOT}/models/document_classifier")

RUN_KEY = "{{ run_id | run_key }}"
RUN_DIR = "{{ params.data_root }}/nightly_retrain/runs/" + RUN_KEY
REGISTRY = "{{ params.data_root }}/models/document_classifier"
CANDIDATE = f"{REGISTRY}/candidates/{RUN_KEY}"
FEATURES_URI = "{{ params.data_root }}/features"
#: This run's partition of the features table, and the table version preprocessing committed it in.
FEATURES_PARTITION = {"run_key": RUN_KEY}
FEATURES_VERSION = "{{ ti.xcom_pull(task_ids='preprocess')['delta_version'] }}"
#: The training task's options; evaluate and publish get the same, so the live model can be rebuilt and scored.
TASK_OPTIONS: dict[str, str] = {}


@dag(
    dag_id="nightly_retrain",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlk8s", "training", "ray"],
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=5), "image": IMAGE},
    user_defined_filters=RUN_KEY_FILTERS,
    params={
        "data_root": Param(
            DATA_ROOT,
            type="string",
            minLength=1,
            description="Where raw data, features, checkpoints and models live (a path, s3:// or gs:// URI).",
        ),
        "documents": number_param(
            300, minimum=1, maximum=10_000_000, description="How many sample documents the extract step writes."
        ),
        "epochs": number_param(20, minimum=1, maximum=1000, description="Training epochs."),
        "seed": number_param(
            0, minimum=0, description="Seed of the model and of the held-out split: same seed and data, same model."
        ),
        "tolerance": number_param(
            0.0,
            integer=False,
            minimum=0,
            maximum=1,
            description="How much lower held-out accuracy than the live model's still counts as not worse.",
        ),
        "force_publish": Param(
            False,
            type="boolean",
            description="Publish the new model without comparing (e.g. after changing the model's shapes).",
        ),
        "simulate_eviction": Param(
            False,
            type="boolean",
            description="Local backend only: evict the training pod "
            "once (SIGTERM after its first checkpoint) to show it resume.",
        ),
    },
    doc_md=__doc__,
)
def nightly_retrain() -> None:
    check = ConfCheckOperator()
    extract = PodTaskOperator(
        task_id="extract_documents",
        cmds=["python", "-m", "mlk8s.preprocessing.samples"],
        arguments=["--output", f"{RUN_DIR}/raw/documents.parquet", "--rows", "{{ params.documents }}"],
        do_xcom_push=False,
    )
    preprocess = PreprocessingOperator(
        task_id="preprocess",
        input_uri=f"{RUN_DIR}/raw/documents.parquet",
        output_uri=FEATURES_URI,
        partition=FEATURES_PARTITION,
        output_asset=FEATURES,
    )
    train = TrainingOperator(
        task_id="train",
        data_uri=FEATURES_URI,
        data_partition=FEATURES_PARTITION,
        data_version=FEATURES_VERSION,
        checkpoint_uri=f"{RUN_DIR}/checkpoints",
        output_uri=CANDIDATE,
        epochs="{{ params.epochs }}",
        seed="{{ params.seed }}",
        task_options=TASK_OPTIONS,
        checkpoint_every_steps=50,
        local_disruption={
            "enabled": "{{ params.simulate_eviction }}",
            "signal": "SIGTERM",
            "after_log": "checkpoint committed step=",
            "attempts": [1],
        },
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        registry_uri=REGISTRY,
        candidate_uri=CANDIDATE,
        data_uri=FEATURES_URI,
        data_partition=FEATURES_PARTITION,
        data_version=FEATURES_VERSION,
        task_options=TASK_OPTIONS,
        tolerance="{{ params.tolerance }}",
        force="{{ params.force_publish }}",
    )

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def not_worse(evaluation: dict[str, Any]) -> bool:
        """Skips ``publish`` (and with it the model Asset event) unless the evaluation said publish."""
        return evaluation.get("decision") == "publish"

    publish = PublishModelOperator(
        task_id="publish",
        registry_uri=REGISTRY,
        candidate_uri=CANDIDATE,
        expect_live="{{ (ti.xcom_pull(task_ids='evaluate')['published'] or {}).get('weights_sha256') or 'none' }}",
        run_key=RUN_KEY,
        task_options=TASK_OPTIONS,
        model_asset=MODEL,
    )

    @task(trigger_rule="none_failed")
    def live_model() -> dict[str, Any]:
        """Which model is live after this run, whether or not its candidate was published."""
        ti = get_current_context()["ti"]
        report = live_model_report(ti.xcom_pull(task_ids="evaluate"), ti.xcom_pull(task_ids="publish"))
        live = report["live"] or {}
        print(
            f"mlk8s: live model {str(live.get('weights_sha256'))[:12]} from run {live.get('run_key')} at "
            f"{live.get('model_dir')}; this run's candidate was "
            f"{'published' if report['candidate_published'] else 'kept out'}: {report['reason']}"
        )
        return report

    check >> extract >> preprocess >> train >> evaluate
    not_worse(evaluate.output) >> publish >> live_model()


nightly_retrain()
