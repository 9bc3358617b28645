"""PodTaskOperator end to end in real Airflow (``dag.test()`` on SQLite) with the local backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlk8s_airflow.config import ConfigError
from mlk8s_airflow.operators.pod import PodTaskOperator
from tests.unit.mlk8s_airflow.operators.dagruns import run_fixture_dag

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

IMAGE = "ghcr.io/acme/mlk8s:0.1.0"


def run_dag(dag_id: str) -> tuple[str, Any, int]:
    from tests.fixture_dags import pod_task_dags

    return run_fixture_dag(getattr(pod_task_dags, dag_id), "pod")


def test_success_returns_the_pods_xcom(airflow_db: object) -> None:
    state, xcom, _ = run_dag("pod_ok")
    assert state == "success"
    assert xcom == {"answer": 42}


def test_code_failure_fails_the_task(airflow_db: object) -> None:
    state, _, _ = run_dag("pod_fail")
    assert state == "failed"


def test_a_disrupted_pod_is_relaunched_without_spending_a_retry(airflow_db: object) -> None:
    state, xcom, try_number = run_dag("pod_evicted_once")
    assert state == "success"
    assert xcom == {"done": True}
    assert try_number == 1


def test_too_many_disruptions_fail_the_task(airflow_db: object) -> None:
    state, _, _ = run_dag("pod_evicted_always")
    assert state == "failed"


def test_unknown_backend_is_refused_before_launch(airflow_db: object) -> None:
    marker = Path("/tmp/mlk8s-bad-backend-launched")
    marker.unlink(missing_ok=True)
    state, _, _ = run_dag("pod_bad_backend")
    assert state == "failed"
    assert not marker.exists()


def test_rejected_input_fails_without_spending_retries(airflow_db: object) -> None:
    state, _, try_number = run_dag("pod_usage_error")
    assert state == "failed"
    assert try_number == 1


def test_unknown_deployment_backend_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlk8s_airflow.config import resolve_backend

    monkeypatch.setenv("AIRFLOW__MLK8S__BACKEND", "k8s")
    with pytest.raises(ConfigError, match=r"\[mlk8s\] backend is 'k8s'.*'kubernetes', 'local'"):
        resolve_backend()


def test_negative_max_disruptions_is_refused() -> None:
    with pytest.raises(ValueError, match="max_disruptions is -1"):
        PodTaskOperator(task_id="x", image=IMAGE, cmds=["true"], max_disruptions=-1)


def test_a_param_naming_the_token_reaches_the_local_pod_literally(tmp_path: Path) -> None:
    """Issue 13 on the local backend: `/$(RAY_AUTH_TOKEN)` from a Param is an argument, never the token."""
    from tests.unit.mlk8s_airflow.operators.test_pod_kubernetes import context_for

    out = tmp_path / "argv.json"
    op = PodTaskOperator(
        task_id="pod",
        image=IMAGE,
        backend="local",
        cmds=["python", "-c", "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"],
        arguments=[str(out), "/$(RAY_AUTH_TOKEN)", "$$"],
        env_vars={"RAY_AUTH_TOKEN": "s3cret-token"},
        do_xcom_push=False,
    )
    op.execute(context_for("pod"))
    assert json.loads(out.read_text()) == ["/$(RAY_AUTH_TOKEN)", "$$"]
