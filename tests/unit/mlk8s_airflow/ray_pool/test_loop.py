"""The one pool loop: reading the queue per pool, decision ids, ``run``'s cycles, waits, failures and stops, and
whole cycles against a RayCluster (the Airflow queue and Ray's view given; the RayCluster real: the mock API
server, CRD-validated, reached through the cncf provider's KubernetesHook as in production)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlk8s.ray_gcs import RayNodeActivity, RayState
from mlk8s.scaling import PolicyState, QueueSnapshot, ResourceDemand
from mlk8s_airflow.ray_pool.loop import CycleResult, RayPoolLoop, decision_id
from mlk8s_airflow.ray_pool.settings import RayPoolSettings
from tests.k8s_api import MockKubeServer
from tests.unit.mlk8s_airflow.actuators.test_kuberay import NAME, NS, pod, raycluster, stored

CPU = {"name": "cpu", "min_workers": 0, "max_workers": 4, "cpus_per_worker": 2}


def local_settings(**overrides: Any) -> RayPoolSettings:
    return RayPoolSettings.parse({"groups": [CPU], "actuator": "local", "ray_address": "127.0.0.1:6379", **overrides})


class FakeApi:
    def __init__(self, counts: dict[str, dict[str, int]]) -> None:
        self.counts = counts

    def count_task_instances(self, pool: str) -> dict[str, int]:
        return self.counts[pool]

    def next_dagrun_times(self, dag_ids: Any) -> dict[str, Any]:
        return {"nightly": datetime.fromtimestamp(5000.0, UTC), "past": datetime.fromtimestamp(10.0, UTC)}


def test_one_queue_snapshot_per_pool_with_its_task_shape() -> None:
    settings = local_settings(
        queue_pools={"ray": {"cpus": 2}, "ray-gpu": {"cpus": 1, "gpus": 1}}, prewarm_dag_ids=["nightly", "past"]
    )
    loop = RayPoolLoop(settings, "k")
    loop.__dict__["airflow_api"] = FakeApi(
        {
            "ray": {"queued": 3, "scheduled": 1, "running": 2, "deferred": 1},
            "ray-gpu": {"queued": 2, "scheduled": 0, "running": 0, "deferred": 0},
        }
    )
    cpu, gpu = loop.read_queue(now=100.0)
    assert (cpu.queued, cpu.scheduled, cpu.running) == (3, 1, 3)  # deferred tasks wait on Ray: running work
    assert cpu.task_shape == ResourceDemand(cpus=2)
    assert gpu.task_shape == ResourceDemand(cpus=1, gpus=1) and gpu.queued == 2
    assert cpu.next_dagrun_run_after == 5000.0  # the next run still ahead, not one in the past


def test_decision_ids_differ_when_a_restarted_loop_reuses_a_sequence_number() -> None:
    assert decision_id("r", 3, 10.0) != decision_id("r", 3, 25.0)
    assert decision_id("r", 3, 10.0) == decision_id("r", 3, 10.0)


class ScriptedLoop(RayPoolLoop):
    """``cycle`` replaced by a script: each entry is a point's queue length, or an exception to raise."""

    def __init__(self, script: list[Any], clock: Any = None, **overrides: Any) -> None:
        super().__init__(local_settings(interval_s=0.001, **overrides), "k", **({"clock": clock} if clock else {}))
        self.script = list(script)
        self.seen: list[int] = []

    def cycle(self, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        self.seen.append(seq)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        new = PolicyState(recommendations={"cpu": ((float(seq), seq),)})
        return CycleResult([], new, {"t": seq, "queued": step, "running": 0, "pool": 0, "target": 0}, [])


def test_run_carries_the_state_through_its_cycles() -> None:
    loop = ScriptedLoop([1, 2, 3])
    seen: list[int] = []
    report = loop.run(PolicyState(), 4, cycles=3, on_cycle=lambda r: seen.append(r.point["queued"]))
    assert loop.seen == [5, 6, 7] and report.seq == 7 and seen == [1, 2, 3]
    assert [p["t"] for p in report.points] == [5, 6, 7]
    assert report.state.recommendations == {"cpu": ((7.0, 7),)}
    assert (report.error, report.done, report.failures, report.errors) == (None, False, 0, [])


def test_failed_cycles_are_recorded_and_enough_of_them_in_a_row_end_the_run() -> None:
    loop = ScriptedLoop([ConnectionError("GCS unreachable"), 5, ConnectionError("again"), ConnectionError("down")])
    report = loop.run(PolicyState(), 0, cycles=4, max_failed_cycles=3, failures=1)
    assert loop.seen == [1, 2, 3, 4]
    assert [e["cycle"] for e in report.errors] == [1, 3, 4]
    assert report.errors[0]["message"] == "ConnectionError: GCS unreachable"
    assert report.failures == 2 and report.error is None  # the success in between reset the count
    loop = ScriptedLoop([ConnectionError("x"), ConnectionError("y")])
    report = loop.run(PolicyState(), 0, cycles=10, max_failed_cycles=3, failures=1)  # 1 carried over + 2
    assert report.error == "3 ray pool cycles failed in a row; last error: y" and loop.seen == [1, 2]


def test_the_run_ends_at_its_time_or_when_stopped() -> None:
    loop = ScriptedLoop([], clock=lambda: 100.0)
    report = loop.run(PolicyState(), 0, cycles=5, until=50.0)
    assert report.done and loop.seen == [] and report.points == []
    stop = threading.Event()
    stop.set()
    loop = ScriptedLoop([1])
    assert loop.run(PolicyState(), 0, cycles=5, stop=stop).seq == 0  # stopped during the first wait
    assert ScriptedLoop([1]).run(PolicyState(), 0, cycles=1, wait_first=False, stop=stop).seq == 1


# --- whole cycles against a RayCluster ------------------------------------------------------------------------


class FakeGcs:
    address = "mlk8s-ray-head-svc.mlk8s:6379"

    def __init__(self) -> None:
        self.state: RayState | None = RayState(demand=(), nodes=())

    def cluster_state(self, group_label: str) -> RayState:
        if self.state is None:
            raise ConnectionError("GCS unreachable")
        return self.state

    def close(self) -> None:
        pass


class GivenInputs(RayPoolLoop):
    queue = QueueSnapshot()

    def read_queue(self, now: float) -> list[QueueSnapshot]:
        return [self.queue]


@pytest.fixture
def kuberay_loop(k8s_server: MockKubeServer, k8s_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> GivenInputs:
    from kubernetes import client

    api = k8s_server.api_client()
    client.CustomObjectsApi(api).create_namespaced_custom_object("ray.io", "v1", NS, "rayclusters", raycluster(False))
    for i, name in enumerate(("pool-cpu-a", "pool-cpu-b", "pool-cpu-c")):
        k8s_server.put_object(pod(name, ip=f"10.1.0.{i}"))
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(k8s_kubeconfig), "namespace": NS}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_RAY_POOL", json.dumps(conn))
    settings = RayPoolSettings.parse(
        {
            "groups": [
                {"name": "cpu", "min_workers": 0, "max_workers": 8, "cpus_per_worker": 4},
                {"name": "gpu", "min_workers": 0, "max_workers": 2, "cpus_per_worker": 8, "gpus_per_worker": 1},
            ],
            "actuator": "kuberay-own",
            "ray_address": "mlk8s-ray-head-svc.mlk8s:6379",
            "kubernetes_conn_id": "kubernetes_ray_pool",
            "raycluster_name": NAME,
            "namespace": NS,
            "policy": {"scale_down_window_s": 60, "cpus_per_task": 4},
        }
    )
    loop = GivenInputs(settings, run_key="test/kuberay")
    loop.__dict__["gcs"] = FakeGcs()
    return loop


def node(node_id: str, pod: str, busy: bool) -> RayNodeActivity:
    return RayNodeActivity(node_id, pod, "cpu", "RUNNING" if busy else "IDLE", busy, 0 if busy else 5000, "x")


def test_queued_tasks_raise_replicas_in_one_step(kuberay_loop: GivenInputs, k8s_server: MockKubeServer) -> None:
    kuberay_loop.gcs.state = RayState(demand=(), nodes=(node("n1", "pool-cpu-a", True), node("n2", "pool-cpu-b", True)))
    kuberay_loop.queue = QueueSnapshot(queued=4, running=2)  # 6 tasks of 4 CPUs on 4-CPU workers
    result = kuberay_loop.cycle(PolicyState(), seq=1, now=1000.0)
    cpu_decision, gpu_decision = result.decisions
    assert cpu_decision.current == 3 and cpu_decision.target > 3  # grows for the backlog in one decision
    assert gpu_decision.target == 0  # CPU work never grows the GPU group
    cpu, gpu = stored(k8s_server)["spec"]["workerGroupSpecs"]
    assert cpu["replicas"] == cpu_decision.target
    assert gpu["replicas"] == 0
    assert (cpu.get("scaleStrategy") or {}).get("workersToDelete", []) == []


def test_a_drained_pool_removes_only_idle_pods_after_the_window(
    kuberay_loop: GivenInputs, k8s_server: MockKubeServer
) -> None:
    # pool-cpu-c has not joined Ray: pending, removed first; pool-cpu-b is idle; pool-cpu-a is busy.
    kuberay_loop.gcs.state = RayState(
        demand=(), nodes=(node("n1", "pool-cpu-a", True), node("n2", "pool-cpu-b", False))
    )
    kuberay_loop.queue = QueueSnapshot(queued=0, running=1)
    first = kuberay_loop.cycle(PolicyState(recommendations={"cpu": ((990.0, 3),)}), seq=1, now=1000.0)
    assert first.decisions[0].target == 3 and stored(k8s_server)["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    later = kuberay_loop.cycle(first.state, seq=2, now=1100.0)
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
    kuberay_loop: GivenInputs, k8s_server: MockKubeServer
) -> None:
    kuberay_loop.gcs.state = None  # the GCS cannot be read: busy or idle is unknown
    kuberay_loop.queue = QueueSnapshot()
    quiet = kuberay_loop.cycle(PolicyState(recommendations={"cpu": ((0.0, 3),)}), seq=1, now=10_000.0)
    assert quiet.decisions[0].target == 3 and not quiet.decisions[0].remove
    assert quiet.point["ray_pending"] is None
    kuberay_loop.queue = QueueSnapshot(queued=8)
    busy = kuberay_loop.cycle(quiet.state, seq=2, now=10_010.0)
    assert busy.decisions[0].target > 3
    assert stored(k8s_server)["spec"]["workerGroupSpecs"][0]["replicas"] == busy.decisions[0].target
