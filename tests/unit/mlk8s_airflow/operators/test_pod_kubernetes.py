"""The kubernetes backend: KPO's real path through the real kubernetes client, against the stateful mock API
server (which validates every object we send against the official schemas and plays scripted pod lives)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import ApiClient

from mlk8s_airflow.operators.pod import PodTaskOperator
from mlk8s_airflow.operators.training import TrainingOperator
from tests.k8s_api import Disruption, MockKubeServer, PodScript

pytestmark = pytest.mark.slow

NS = "mlk8s"
IMAGE = "ghcr.io/acme/mlk8s:0.1.0"


class FakeTI:
    """The few TaskInstance attributes KPO reads; XComs are kept to check what the task pushed."""

    def __init__(self, task_id: str) -> None:
        self.dag_id, self.task_id, self.try_number, self.map_index = "kube_dag", task_id, 1, -1
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class FakeStore(dict):
    def set(self, key: str, value: Any, **_: Any) -> None:
        self[key] = value


def context_for(task_id: str) -> dict[str, Any]:
    return {
        "ti": FakeTI(task_id),
        "run_id": "manual__2025-01-01",
        "dag": SimpleNamespace(dag_id="kube_dag"),
        "task_state_store": FakeStore(),
        "outlet_events": {},
    }


def pod_op(kubeconfig: Path, task_id: str = "job", **kwargs: Any) -> PodTaskOperator:
    kwargs.setdefault("cmds", ["python", "-m", "mlk8s.example"])
    kwargs.setdefault("image", IMAGE)
    return PodTaskOperator(
        task_id=task_id,
        namespace=NS,
        config_file=str(kubeconfig),
        in_cluster=False,
        backend="kubernetes",
        startup_timeout_seconds=20,
        startup_check_interval_seconds=1,
        get_logs=True,
        **kwargs,
    )


def pods(server: MockKubeServer) -> list[dict]:
    return server.objects("pods", NS)


def test_success_returns_the_sidecar_xcom(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    k8s_server.script_pod("job", logs=["hello", "done"], xcom={"rows": 7})
    result = pod_op(k8s_kubeconfig).execute(context_for("job"))
    assert result == {"rows": 7}
    assert pods(k8s_server) == []  # deleted when done


@pytest.mark.parametrize(
    "disruption",
    [
        Disruption.preempted(),
        Disruption.evicted(),
        Disruption.evicted_by_api(vanish=True),
        Disruption.node_tainted(vanish=True),
        Disruption.node_lost(),
    ],
    ids=["preempted", "evicted", "eviction-api-deleted", "taint-manager-deleted", "node-lost"],
)
def test_disrupted_pod_is_relaunched_in_the_same_try(
    k8s_server: MockKubeServer, k8s_kubeconfig: Path, disruption: Disruption
) -> None:
    first = k8s_server.script_pod("job", logs=["step 1"], disruption=disruption)
    second = k8s_server.script_pod("job", logs=["resumed", "done"], xcom={"ok": True})
    ctx = context_for("job")
    result = pod_op(k8s_kubeconfig).execute(ctx)
    assert result == {"ok": True}
    assert first.played_on and second.played_on and first.played_on != second.played_on
    assert ctx["task_state_store"]["mlk8s_disruptions"] == 1


def test_code_failure_is_not_relaunched(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    k8s_server.script_pod("job", logs=["Traceback: boom"], exit_code=1)
    spare = k8s_server.script_pod("job", xcom={"never": "used"})
    with pytest.raises(AirflowException, match="returned a failure"):
        pod_op(k8s_kubeconfig).execute(context_for("job"))
    assert spare.played_on is None


def test_rejected_input_is_not_retried(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    k8s_server.script_pod("job", logs=["error: --epochs must be >= 0"], exit_code=2)
    with pytest.raises(AirflowFailException, match="rejected its input"):
        pod_op(k8s_kubeconfig).execute(context_for("job"))


def test_oom_is_a_real_failure(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    k8s_server.script_pod("job", exit_code=137, termination_reason="OOMKilled")
    spare = k8s_server.script_pod("job", xcom={})
    with pytest.raises(AirflowException):
        pod_op(k8s_kubeconfig).execute(context_for("job"))
    assert spare.played_on is None


def test_disruption_cap_fails_with_a_clear_message(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    for _ in range(3):
        k8s_server.script_pod("job", disruption="preempted")
    with pytest.raises(AirflowException, match="more than max_disruptions=1"):
        pod_op(k8s_kubeconfig, max_disruptions=1).execute(context_for("job"))


def test_missing_command_is_refused_before_any_pod(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    with pytest.raises(ValueError, match="image"):
        pod_op(k8s_kubeconfig, image="Bad Image").execute(context_for("job"))
    assert pods(k8s_server) == []


def test_training_pod_is_protected_by_a_pdb_while_it_runs(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    seen_pdbs: list[list[dict]] = []

    script = PodScript(logs=["training"], xcom={"model_uri": "s3://m/model.safetensors", "steps": 3})
    k8s_server.script_pod("train", script)
    op = TrainingOperator(
        task_id="train",
        image=IMAGE,
        namespace=NS,
        config_file=str(k8s_kubeconfig),
        in_cluster=False,
        backend="kubernetes",
        startup_timeout_seconds=20,
        startup_check_interval_seconds=1,
        checkpoint_uri="s3://bucket/ckpt",
        output_uri="s3://bucket/model",
        deferrable=False,
    )
    original = op.on_pod_succeeded

    def spy(context: Any, result: Any) -> Any:
        seen_pdbs.append(k8s_server.objects("poddisruptionbudgets", NS, group="policy"))
        return original(context, result)

    op.on_pod_succeeded = spy  # type: ignore[method-assign]
    result = op.execute(context_for("train"))
    assert result["model_uri"] == "s3://m/model.safetensors" and result["relaunches"] == 0
    # The PDB existed while the pod ran, selected this task's pods, and is gone now.
    pdb = seen_pdbs[0][0]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["task_id"] == "train"
    assert k8s_server.objects("poddisruptionbudgets", NS, group="policy") == []


def test_the_pod_we_send_is_a_valid_core_v1_pod_with_what_was_asked(k8s_kubeconfig: Path) -> None:
    import kubernetes_validate
    from kubernetes.client import models as k8s

    op = TrainingOperator(
        task_id="train",
        image=IMAGE,
        namespace=NS,
        checkpoint_uri="s3://bucket/ckpt",
        output_uri="s3://bucket/model",
        container_resources=k8s.V1ResourceRequirements(limits={"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}),
        env_vars={"MODE": "nightly"},
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        config_file=str(k8s_kubeconfig),
    )
    op.arguments = ["--epochs", "1"]
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context_for("train"), dry_run=True))
    kubernetes_validate.validate(pod, "1.33", strict=True)
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "MODE", "value": "nightly"} in base["env"]
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert base["securityContext"]["allowPrivilegeEscalation"] is False
    assert any(c["name"] == "airflow-xcom-sidecar" for c in pod["spec"]["containers"])


def test_deferrable_relaunch_after_a_vanished_pod(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    """Deferrable mode: a pod deleted while the task waited (evicted through the API) is a disruption."""
    from tests.unit.mlk8s_airflow.operators.deferral import defer, resume

    k8s_server.script_pod("job", logs=["step 1"], disruption=Disruption.evicted_by_api(vanish=True))
    second = k8s_server.script_pod("job", logs=["resumed"], xcom={"ok": True})
    ctx = context_for("job")
    deferred = defer(lambda: pod_op(k8s_kubeconfig, deferrable=True, poll_interval=0.2).execute(ctx))
    again = defer(lambda: resume(lambda: pod_op(k8s_kubeconfig, deferrable=True, poll_interval=0.2), ctx, deferred))
    assert resume(lambda: pod_op(k8s_kubeconfig, deferrable=True), ctx, again) == {"ok": True}
    assert second.played_on is not None and ctx["task_state_store"]["mlk8s_disruptions"] == 1


def test_deferrable_code_failure_is_not_relaunched(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    from tests.unit.mlk8s_airflow.operators.deferral import defer, resume

    k8s_server.script_pod("job", logs=["boom"], exit_code=1)
    spare = k8s_server.script_pod("job", xcom={"never": "used"})
    ctx = context_for("job")
    deferred = defer(lambda: pod_op(k8s_kubeconfig, deferrable=True, poll_interval=0.2).execute(ctx))
    with pytest.raises(AirflowException):
        resume(lambda: pod_op(k8s_kubeconfig, deferrable=True), ctx, deferred)
    assert spare.played_on is None


def test_user_values_in_arguments_are_sent_escaped(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    """Issue 13: a Param rendered into the arguments never becomes a $(VAR) reference the kubelet expands."""
    k8s_server.script_pod("job", logs=["ok"], xcom={})
    op = pod_op(k8s_kubeconfig, arguments=["--output", "/$(RAY_AUTH_TOKEN)", "cost: $5"])
    op.execute(context_for("job"))
    sent = next(r.body for r in k8s_server.requests if r.method == "POST" and r.path.endswith("/pods"))
    base = next(c for c in sent["spec"]["containers"] if c["name"] == "base")
    assert base["args"] == ["--output", "/$$(RAY_AUTH_TOKEN)", "cost: $$5"]
    assert base["command"] == ["python", "-m", "mlk8s.example"]


def test_expanding_references_is_an_explicit_choice(k8s_kubeconfig: Path) -> None:
    op = pod_op(k8s_kubeconfig, arguments=["$(POD_NAME)"], expand_env_references=True)
    pod = op.build_pod_request_obj(context_for("job"), dry_run=True)
    assert pod.spec.containers[0].args == ["$(POD_NAME)"]


@pytest.mark.parametrize(
    "requested",
    [
        {"readOnlyRootFilesystem": True, "capabilities": {"add": ["NET_BIND_SERVICE"]}},
        "model",
    ],
)
def test_a_container_security_context_is_merged_into_the_hardened_default(k8s_kubeconfig: Path, requested: Any) -> None:
    """Issue 13: setting one field must not drop non-root, no privilege escalation and dropped capabilities."""
    from kubernetes.client import models as k8s

    if requested == "model":
        requested = k8s.V1SecurityContext(
            read_only_root_filesystem=True, capabilities=k8s.V1Capabilities(add=["NET_BIND_SERVICE"])
        )
    op = pod_op(k8s_kubeconfig, container_security_context=requested, security_context={"runAsUser": 1234})
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context_for("job"), dry_run=True))
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    assert base["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
    }
    assert pod["spec"]["securityContext"]["runAsUser"] == 1234
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
