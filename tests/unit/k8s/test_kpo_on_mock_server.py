"""The provider's own KubernetesPodOperator runs end to end against the mock API server.

This is what makes the mock worth trusting for the operators built on KPO: KPO's real sync path (find pod,
create, await start while reading events, follow logs with timestamps, XCom sidecar over websocket exec,
patch ``already_checked``, delete) goes over the wire, through a kubeconfig loaded by ``KubernetesHook``
from an Airflow connection.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_api import MockKubeServer

#: Importing the provider (Airflow's configuration, plugins) takes several seconds on its own.
pytestmark = [pytest.mark.slow, pytest.mark.airflow]

NS = "mlk8s"


class _TaskInstance:
    """The few task-instance attributes KPO reads; XComs land in a dict (no Airflow database here)."""

    dag_id = "nightly"
    task_id = "train"
    map_index = -1
    try_number = 1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@pytest.fixture
def kpo_context(k8s_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(k8s_kubeconfig), "namespace": NS}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(connection))
    ti = _TaskInstance()
    return {"ti": ti, "task_instance": ti, "run_id": "scheduled__2026-11-29T00:00:00+00:00", "dag": None}


def _operator(**kwargs: Any) -> Any:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator(
        task_id="train",
        name="train",
        namespace=NS,
        image="ghcr.io/example/mlk8s:0.1.0",
        cmds=["python", "-m", "mlk8s.training"],
        startup_check_interval_seconds=0.1,  # type: ignore[arg-type]
        base_container_status_polling_interval=0.1,
        **kwargs,
    )


def test_kpo_runs_a_scripted_pod_to_success_with_xcom(
    k8s_server: MockKubeServer, kpo_context: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    k8s_server.script_pod({"task_id": "train"}, logs=["epoch 1 loss 0.9", "epoch 2 loss 0.4"], xcom={"model": "s3://m"})
    op = _operator(do_xcom_push=True)
    result = op.execute(kpo_context)
    assert result == {"model": "s3://m"}
    out = capfd.readouterr()
    assert "[base] epoch 2 loss 0.4" in out.out + out.err  # KPO followed the log stream (structlog output)
    pod_name = kpo_context["ti"].xcoms["pod_name"]
    assert pod_name.startswith("train-")
    assert k8s_server.get("pods", pod_name, NS) is None  # deleted by on_finish_action=delete_pod
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in k8s_server.requests]
    assert ("POST", "pods") in calls and ("GET", "log") in calls and ("DELETE", pod_name) in calls
    log_query = next(r.query for r in k8s_server.requests if r.path.endswith("/log"))
    assert log_query["follow"] == "True" and log_query["timestamps"] == "True" and log_query["container"] == "base"


def test_kpo_fails_the_task_when_its_pod_is_preempted(k8s_server: MockKubeServer, kpo_context: dict[str, Any]) -> None:
    from airflow.exceptions import AirflowException

    k8s_server.script_pod({"task_id": "train"}, logs=["step 1", "step 2"], disruption="preempted")
    op = _operator(on_finish_action="keep_pod")
    with pytest.raises(AirflowException, match="returned a failure"):
        op.execute(kpo_context)
    pod = k8s_server.get("pods", kpo_context["ti"].xcoms["pod_name"], NS)
    assert pod is not None
    assert pod["metadata"]["labels"]["already_checked"] == "True"  # KPO's patch went through
    assert any(c["type"] == "DisruptionTarget" for c in pod["status"]["conditions"])


def test_kpo_needs_only_what_the_worker_role_grants(k8s_server: MockKubeServer, kpo_context: dict[str, Any]) -> None:
    """Every request KPO made (XCom sidecar included) is allowed by helm-values/rbac.yaml's worker Role."""
    from tests.unit.k8s.manifests import load_all, rbac_allows, rbac_checks

    role = next(d for d in load_all("rbac.yaml") if d["kind"] == "Role" and d["metadata"]["name"] == "mlk8s-operators")
    k8s_server.script_pod({"task_id": "train"}, logs=["ok"], xcom=[1, 2])
    assert _operator(do_xcom_push=True).execute(kpo_context) == [1, 2]
    k8s_server.script_pod({"task_id": "train"}, logs=["boom"], exit_code=1)
    with pytest.raises(Exception, match="returned a failure"):
        _operator(on_finish_action="keep_pod").execute(kpo_context)
    needed = {c for r in k8s_server.requests for c in rbac_checks(r.method, r.path, r.query)}
    assert {("", "pods/exec", "get"), ("", "pods/exec", "create")} <= needed and ("", "events", "list") in needed
    denied = [n for n in needed if not rbac_allows(role["rules"], *n)]
    assert denied == []


def test_deferrable_kpo_runs_through_its_trigger_within_the_triggerer_role(
    k8s_server: MockKubeServer, kpo_context: dict[str, Any]
) -> None:
    """Deferrable mode: the trigger (kubernetes_asyncio, as in the triggerer) polls the mock server too."""
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred

    from tests.unit.k8s.manifests import load_all, rbac_allows, rbac_checks

    k8s_server.script_pod({"task_id": "train"}, logs=["epoch 1"], keep_running=True)
    op = _operator(deferrable=True, poll_interval=0.1)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(kpo_context)
    before = len(k8s_server.requests)

    def finish_after_the_trigger_read_logs() -> None:
        """The trigger polls the pod while it runs; end the pod after it has polled a few times."""
        deadline = time.time() + 20
        while time.time() < deadline and sum(r.method == "GET" for r in k8s_server.requests[before:]) < 3:
            time.sleep(0.05)
        pod = k8s_server.objects("pods", NS)[0]
        k8s_server.finish_pod(NS, pod["metadata"]["name"], 0)

    threading.Thread(target=finish_after_the_trigger_read_logs, daemon=True).start()

    async def first_event() -> Any:
        async for event in deferred.value.trigger.run():
            return event
        return None

    event = asyncio.run(first_event())
    assert event.payload["status"] == "success"
    trigger_requests = k8s_server.requests[before:]
    assert trigger_requests, "the trigger made no request"
    role = next(d for d in load_all("rbac.yaml") if d["kind"] == "Role" and d["metadata"]["name"] == "mlk8s-triggerer")
    needed = {c for r in trigger_requests for c in rbac_checks(r.method, r.path, r.query)}
    assert ("", "pods", "get") in needed
    assert [n for n in needed if not rbac_allows(role["rules"], *n)] == []
    getattr(op, deferred.value.method_name)(kpo_context, event.payload)  # logs and cleanup, as on resume
    assert k8s_server.get("pods", event.payload["name"], NS) is None
