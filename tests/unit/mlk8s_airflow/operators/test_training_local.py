"""TrainingOperator through real Airflow and the real trainer: evicted runs resume to the very same weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlk8s_airflow.operators.training import TrainingOperator, training_arguments
from tests.unit.mlk8s_airflow.operators.dagruns import run_fixture_dag

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def run_training_dag(dag_id: str) -> tuple[str, Any]:
    from tests.fixture_dags import training_dags

    state, xcom, try_number = run_fixture_dag(getattr(training_dags, dag_id), "train")
    assert try_number == 1  # relaunches never spend an Airflow retry
    return state, xcom


@pytest.fixture(scope="module")
def clean_run(airflow_db: object) -> dict:
    state, xcom = run_training_dag("train_clean")
    assert state == "success"
    return xcom


def test_clean_run_reports_the_model(clean_run: dict) -> None:
    assert Path(clean_run["model_uri"]).name == "model.safetensors"
    assert Path(clean_run["model_uri"]).exists()
    assert clean_run["relaunches"] == 0 and clean_run["resumes"] == 0
    assert clean_run["metrics"]["held_out_accuracy"] > 0.5


@pytest.mark.parametrize("dag_id", ["train_sigterm", "train_sigkill"])
def test_evicted_training_resumes_to_identical_weights(clean_run: dict, dag_id: str) -> None:
    state, xcom = run_training_dag(dag_id)
    assert state == "success"
    assert xcom["relaunches"] == 1
    assert xcom["resumes"] == 1
    assert xcom["weights_sha256"] == clean_run["weights_sha256"]
    if dag_id == "train_sigterm":
        assert xcom["work_lost_steps"] == 0  # the emergency checkpoint saved everything
    else:
        assert 0 < xcom["work_lost_steps"] <= 20  # at most one checkpoint interval


def test_arguments_are_an_exec_array() -> None:
    args = training_arguments(
        checkpoint_uri="s3://b/ck; rm -rf /",
        output_uri="s3://b/out",
        epochs=2,
        seed=1,
        checkpoint_every_steps=50,
        keep_last=2,
        termination_grace_seconds=120,
        task_options={"hidden": 64},
    )
    assert args[:2] == ["--checkpoint-uri", "s3://b/ck; rm -rf /"]
    assert ["--task-option", "hidden=64"] == args[-2:]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"checkpoint_uri": " "}, "checkpoint_uri is empty"),
        ({"output_uri": ""}, "output_uri is empty"),
        ({"task_options": {"bad key": 1}}, "task_options key 'bad key'"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    base = dict(
        checkpoint_uri="/c",
        output_uri="/o",
        epochs=1,
        seed=0,
        checkpoint_every_steps=1,
        keep_last=1,
        termination_grace_seconds=1,
    )
    with pytest.raises(ValueError, match=match):
        training_arguments(**{**base, **kwargs})


def test_stateful_placement_defaults() -> None:
    op = TrainingOperator(task_id="t", image="ghcr.io/acme/mlk8s:0.1.0", checkpoint_uri="/c", output_uri="/o")
    pod = op.build_pod_request_obj(None, dry_run=True)
    spec = pod.spec
    term = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms[0]
    assert term.match_expressions[0].key == "mlk8s.io/pool" and term.match_expressions[0].values == ["stateful"]
    assert spec.tolerations[0].value == "stateful" and spec.tolerations[0].effect == "NoSchedule"
    assert pod.metadata.annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert spec.termination_grace_period_seconds == 120
    assert spec.security_context.run_as_non_root is True
    base = next(c for c in spec.containers if c.name == "base")
    assert base.security_context.allow_privilege_escalation is False
    assert base.command == ["python", "-m", "mlk8s.training"]


def test_placement_is_overridable() -> None:
    op = TrainingOperator(
        task_id="t",
        image="ghcr.io/acme/mlk8s:0.1.0",
        checkpoint_uri="/c",
        output_uri="/o",
        affinity=None,
        tolerations=[],
        annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
        termination_grace_period=600,
    )
    pod = op.build_pod_request_obj(None, dry_run=True)
    assert not pod.spec.affinity and not pod.spec.tolerations
    assert pod.metadata.annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"
    assert pod.spec.termination_grace_period_seconds == 600
