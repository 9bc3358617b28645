"""One sensor cycle against a RayCluster: the Airflow queue and Ray's view are given, the RayCluster is real
(mock API server, CRD-validated, reached through the cncf provider's KubernetesHook like in production)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlk8s.scaling import PolicyState, QueueSnapshot
from mlk8s_airflow.hooks.ray_demand import RayNodeActivity, RayState
from mlk8s_airflow.triggers.ray_pool import RayPoolLoop, RayPoolSettings
from tests.k8s_api import MockKubeServer
from tests.unit.mlk8s_airflow.actuators.test_kuberay import NAME, NS, raycluster, stored


def pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"ray.io/cluster": NAME, "ray.io/group": "cpu", "ray.io/node-type": "worker"},
        },
        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.60.0"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


class GivenInputs(RayPoolLoop):
    queue = QueueSnapshot()
    ray: RayState | None = RayState(demand=(), nodes=())

    def read_queue(self, now: float) -> list[QueueSnapshot]:
        return [self.queue]

    @property
    def ray_reader(self) -> Any:  # type: ignore[override]
        loop = self

        class Reader:
            def read(self) -> RayState:
                if loop.ray is None:
                    raise ConnectionError("GCS unreachable")
                return loop.ray

        return Reader()


@pytest.fixture
def loop(k8s_server: MockKubeServer, k8s_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> GivenInputs:
    from kubernetes import client

    api = k8s_server.api_client()
    client.CustomObjectsApi(api).create_namespaced_custom_object("ray.io", "v1", NS, "rayclusters", raycluster(False))
    for i, name in enumerate(("pool-cpu-a", "pool-cpu-b", "pool-cpu-c")):
        k8s_server.put_object(pod(name, f"10.1.0.{i}"))
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(k8s_kubeconfig), "namespace": NS}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_RAY_POOL", json.dumps(conn))
    settings = RayPoolSettings(
        groups=(
            {"name": "cpu", "min_workers": 0, "max_workers": 8, "cpus_per_worker": 4},
            {"name": "gpu", "min_workers": 0, "max_workers": 2, "cpus_per_worker": 8, "gpus_per_worker": 1},
        ),
        actuator="kuberay-own",
        ray_address="mlk8s-ray-head-svc.mlk8s:6379",
        kubernetes_conn_id="kubernetes_ray_pool",
        raycluster_name=NAME,
        namespace=NS,
        policy={"scale_down_window_s": 60, "cpus_per_task": 4},
    )
    return GivenInputs(settings, run_key="test/kuberay")


def node(node_id: str, pod: str, busy: bool) -> RayNodeActivity:
    return RayNodeActivity(node_id, pod, "cpu", "RUNNING" if busy else "IDLE", busy, 0 if busy else 5000, "x")


def test_queued_tasks_raise_replicas_in_one_step(loop: GivenInputs, k8s_server: MockKubeServer) -> None:
    loop.ray = RayState(demand=(), nodes=(node("n1", "pool-cpu-a", True), node("n2", "pool-cpu-b", True)))
    loop.queue = QueueSnapshot(queued=4, running=2)  # 6 tasks of 4 CPUs on 4-CPU workers
    result = loop.cycle(PolicyState(), seq=1, now=1000.0)
    cpu_decision, gpu_decision = result.decisions
    assert cpu_decision.current == 3 and cpu_decision.target > 3  # grows for the backlog in one decision
    assert gpu_decision.target == 0  # CPU work never grows the GPU group
    obj = stored(k8s_server)
    cpu, gpu = obj["spec"]["workerGroupSpecs"]
    assert cpu["replicas"] == cpu_decision.target
    assert gpu["replicas"] == 0
    assert (cpu.get("scaleStrategy") or {}).get("workersToDelete", []) == []


def test_drained_pool_removes_only_idle_pods_after_the_window(loop: GivenInputs, k8s_server: MockKubeServer) -> None:
    # pool-cpu-c has not joined Ray: pending, removed first; pool-cpu-b is idle; pool-cpu-a is busy.
    loop.ray = RayState(demand=(), nodes=(node("n1", "pool-cpu-a", True), node("n2", "pool-cpu-b", False)))
    loop.queue = QueueSnapshot(queued=0, running=1)
    first = loop.cycle(PolicyState(recommendations={"cpu": ((990.0, 3),)}), seq=1, now=1000.0)
    assert first.decisions[0].target == 3 and stored(k8s_server)["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    later = loop.cycle(first.state, seq=2, now=1100.0)
    cpu = stored(k8s_server)["spec"]["workerGroupSpecs"][0]
    decision = later.decisions[0]
    assert 1 <= decision.target < 3  # shrinks, but never below the busy worker
    assert cpu["replicas"] == decision.target
    deleted = cpu["scaleStrategy"]["workersToDelete"]
    assert len(deleted) == 3 - decision.target
    assert "pool-cpu-a" not in deleted  # the busy one stays
    assert deleted[0] == "pool-cpu-c"  # the pod Ray never saw goes first
    assert later.point["pool"] == 3 and later.point["target"] == decision.target


def test_without_ray_the_pool_grows_for_the_queue_but_removes_nothing(
    loop: GivenInputs, k8s_server: MockKubeServer
) -> None:
    loop.ray = None  # the GCS cannot be read: busy or idle is unknown
    loop.queue = QueueSnapshot()
    old = PolicyState(recommendations={"cpu": ((0.0, 3),)})
    quiet = loop.cycle(old, seq=1, now=10_000.0)
    assert quiet.decisions[0].target == 3 and not quiet.decisions[0].remove
    assert quiet.point["ray_pending"] is None
    loop.queue = QueueSnapshot(queued=8)
    busy = loop.cycle(quiet.state, seq=2, now=10_010.0)
    assert busy.decisions[0].target > 3
    assert stored(k8s_server)["spec"]["workerGroupSpecs"][0]["replicas"] == busy.decisions[0].target
