"""The sensor's settings, the pure pieces of its loop, and the trigger's event protocol."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

from mlk8s.scaling import Decision, PolicyState, QueueSnapshot, ResourceDemand
from mlk8s_airflow.actuators.base import Member
from mlk8s_airflow.hooks.ray_demand import RayNodeActivity, RayState
from mlk8s_airflow.sensors.ray_pool import RayPoolSensor
from mlk8s_airflow.triggers.ray_pool import (
    CycleResult,
    RayPoolLoop,
    RayPoolSettings,
    RayPoolTrigger,
    append_history,
    decision_id,
    join_workers,
    time_series_point,
)

CPU = {"name": "cpu", "min_workers": 0, "max_workers": 4, "cpus_per_worker": 2}


def sensor(**overrides: Any) -> RayPoolSensor:
    kwargs: dict[str, Any] = {"groups": [CPU], "actuator": "local", "ray_address": "127.0.0.1:6379"}
    kwargs.update(overrides)
    return RayPoolSensor(task_id="ray_pool", **kwargs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"actuator": "kuberay"}, r"actuator='kuberay' is not a known actuator mode; use one of 'kuberay-cooperate'"),
        ({"groups": []}, "groups is empty"),
        (
            {"groups": [{**CPU, "min_workers": 5}]},
            r"max_workers=4 < min_workers=5; set max_workers >= min_workers",
        ),
        ({"groups": [{**CPU, "cpu": 2}]}, r"groups\[0\]: .*unexpected keyword argument 'cpu'"),
        ({"policy": {"scale_down_windw_s": 5}}, r"policy: .*'scale_down_windw_s'.*fields of PolicyConfig"),
        ({"actuator": "kuberay-own"}, "needs raycluster_name and namespace"),
        ({"ray_address": "auto"}, r"ray_address='auto'; pass the Ray GCS address as host:port"),
        ({"interval_s": 0}, r"interval_s=0"),
        ({"cycles_per_event": 0}, r"cycles_per_event=0"),
        ({"run_for_s": -1}, r"run_for_s=-1"),
        ({"queue_pool": ""}, "pool is empty"),
        ({"queue_pools": {"ray-gpu": {"gpu": 1}}}, r"queue_pools\['ray-gpu'\]=.*e.g. \{'cpus': 1, 'gpus': 1\}"),
    ],
)
def test_bad_arguments_fail_before_any_work_naming_the_fix(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sensor(**overrides).settings()


def test_constructor_only_stores_arguments() -> None:
    # Bad values are accepted at parse time (they may be templated); they fail in execute, before any I/O.
    s = sensor(actuator="nonsense", groups=[])
    assert s.actuator == "nonsense"
    assert s.queue_pool == "ray"


def test_settings_round_trip_through_json() -> None:
    settings = sensor(
        policy={"scale_down_window_s": 60, "prewarm_s": 300, "prewarm_demand": [{"cpus": 2, "count": 3}]},
        prewarm_dag_ids=["nightly"],
    ).settings()
    again = RayPoolSettings.from_json(settings.to_json())
    assert again == settings
    assert again.policy_config.prewarm_demand == (ResourceDemand(cpus=2, count=3),)
    assert again.worker_groups[0].cpus_per_worker == 2


def node(node_id: str, busy: bool, instance_id: str = "", ip: str = "", idle_ms: int = 0) -> RayNodeActivity:
    return RayNodeActivity(node_id, instance_id, "cpu", "RUNNING" if busy else "IDLE", busy, idle_ms, ip)


def test_join_workers_maps_pods_to_ray_nodes() -> None:
    ray = RayState(
        demand=(),
        nodes=(
            node("n1", busy=True, instance_id="pod-a", ip="10.0.0.1"),
            node("n2", busy=False, instance_id="", ip="10.0.0.2", idle_ms=30_000),
            node("n3", busy=False, ip="10.0.0.9"),
            node("n4", busy=True, ip="10.0.0.9"),
        ),
    )
    members = [
        Member("pod-a", "cpu", 1.0, ray_keys=("pod-a", "10.0.0.1")),
        Member("pod-b", "cpu", 2.0, ray_keys=("pod-b", "10.0.0.2")),  # found by its (unique) IP
        Member("pod-c", "cpu", 3.0, pending=True, ray_keys=("pod-c",)),
        Member("pod-d", "cpu", 4.0, ray_keys=("pod-d", "10.0.0.7")),  # running pod, not in Ray yet
        Member("pod-e", "cpu", 5.0, ray_keys=("pod-e", "10.0.0.9")),  # shared IP: cannot tell which node
    ]
    workers = {w.id: w for w in join_workers(members, ray, now=100.0)}
    assert workers["pod-a"].busy and not workers["pod-a"].pending
    assert not workers["pod-b"].busy and workers["pod-b"].idle_since == 70.0
    assert workers["pod-c"].pending
    assert workers["pod-d"].pending and not workers["pod-d"].busy
    assert workers["pod-e"].pending


def test_without_ray_every_running_member_counts_as_busy() -> None:
    members = [Member("a", "cpu", 1.0), Member("b", "cpu", 2.0, pending=True)]
    workers = join_workers(members, None, now=5.0)
    assert [(w.id, w.busy, w.pending) for w in workers] == [("a", True, False), ("b", False, True)]


def test_free_resources_reach_the_policy() -> None:
    free = RayNodeActivity("n1", "pod-a", "cpu", "RUNNING", True, 0, "10.0.0.1", 1.5, 0.0, 2e9)
    (worker,) = join_workers([Member("pod-a", "cpu", 0.0, ray_keys=("pod-a",))], RayState((), (free,)), now=1.0)
    assert (worker.free_cpus, worker.free_gpus, worker.free_memory) == (1.5, 0.0, 2e9)


class FakeApi:
    def __init__(self, counts: dict[str, dict[str, int]]) -> None:
        self.counts = counts

    def count_task_instances(self, pool: str) -> dict[str, int]:
        return self.counts[pool]

    def next_dagrun_times(self, dag_ids: Any) -> dict[str, Any]:
        from datetime import UTC, datetime

        return {"nightly": datetime.fromtimestamp(5000.0, UTC), "past": datetime.fromtimestamp(10.0, UTC)}


def test_one_queue_snapshot_per_pool_with_its_task_shape() -> None:
    settings = sensor(
        queue_pools={"ray": {"cpus": 2}, "ray-gpu": {"cpus": 1, "gpus": 1}}, prewarm_dag_ids=["nightly", "past"]
    ).settings()
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


def test_time_series_point_shows_queue_against_pool() -> None:
    decisions = [
        Decision("cpu", current=1, target=3, remove=(), reason="scale up 1 -> 3; backlog"),
        Decision("gpu", current=0, target=0, remove=(), reason="hold 0"),
    ]
    ray = RayState(demand=(ResourceDemand(cpus=1, count=4),), nodes=())
    queues = [QueueSnapshot(queued=4, scheduled=2, running=1), QueueSnapshot(queued=1)]
    point = time_series_point(12.5, queues, ray, decisions)
    assert point == {
        "t": 12.5,
        "queued": 7,
        "running": 1,
        "ray_pending": 4,
        "pool": 1,
        "target": 3,
        "groups": {"cpu": [1, 3], "gpu": [0, 0]},
        "reason": "cpu: scale up 1 -> 3; backlog",
    }
    assert append_history([point] * 5, [point, point], limit=3) == [point] * 3


def test_decision_ids_differ_when_a_restarted_loop_reuses_a_sequence_number() -> None:
    assert decision_id("r", 3, 10.0) != decision_id("r", 3, 25.0)
    assert decision_id("r", 3, 10.0) == decision_id("r", 3, 10.0)


def trigger(**overrides: Any) -> RayPoolTrigger:
    settings = sensor(interval_s=0.001).settings().to_json()
    kwargs: dict[str, Any] = {"settings": settings, "run_key": "d/r/t/1", "cycles_per_event": 3}
    kwargs.update(overrides)
    return RayPoolTrigger(**kwargs)


def test_trigger_serializes_to_itself() -> None:
    original = trigger(state=PolicyState(recommendations={"cpu": ((1.0, 2),)}).to_json(), seq=7, failures=1)
    classpath, kwargs = original.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert PolicyState.from_json(kwargs["state"]).recommendations == {"cpu": ((1.0, 2),)}


def run_trigger(t: RayPoolTrigger) -> list[Any]:
    async def collect() -> list[Any]:
        return [event async for event in t.run()]

    return asyncio.run(collect())


def test_trigger_reports_state_and_points_after_its_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def cycle(self: RayPoolLoop, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        seen.append(seq)
        new = PolicyState(recommendations={"cpu": ((float(seq), seq),)})
        return CycleResult([], new, {"t": seq, "queued": seq, "running": 0, "pool": 0, "target": 0}, [])

    monkeypatch.setattr(RayPoolLoop, "cycle", cycle)
    (event,) = run_trigger(trigger(seq=4))
    assert seen == [5, 6, 7]
    assert event.payload["seq"] == 7
    assert [p["t"] for p in event.payload["points"]] == [5, 6, 7]
    assert PolicyState.from_json(event.payload["state"]).recommendations == {"cpu": ((7.0, 7),)}
    assert event.payload["error"] is None and event.payload["done"] is False


def test_trigger_gives_up_after_failed_cycles_in_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def cycle(self: RayPoolLoop, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        raise ConnectionError("GCS unreachable")

    monkeypatch.setattr(RayPoolLoop, "cycle", cycle)
    (event,) = run_trigger(trigger(cycles_per_event=10, max_failed_cycles=3, failures=1))
    assert event.payload["failures"] == 3
    assert event.payload["seq"] == 2  # the count carried over from the last event counts
    assert "3 ray pool cycles failed in a row; last error: GCS unreachable" in event.payload["error"]


def test_trigger_stops_when_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RayPoolLoop, "cycle", lambda *a, **k: pytest.fail("no cycle after run_until"))
    (event,) = run_trigger(trigger(run_until=1.0))
    assert event.payload["done"] is True and event.payload["points"] == []


class FakeTI:
    """The slice of a task instance the sensor uses: its identity and XCom."""

    dag_id, run_id, task_id, try_number = "ray_pool_autoscaler", "manual__1", "size_ray_pool", 1

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.xcom = {"ray_pool_history": history}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        assert task_ids == self.task_id
        return self.xcom.get(key)


def event(points: int, **extra: Any) -> dict[str, Any]:
    state = PolicyState(recommendations={"cpu": ((50.0, 2),)}).to_json()
    base = {"state": state, "seq": 40, "failures": 1, "done": False, "error": None}
    pts = [{"t": i, "queued": i, "running": 0, "pool": 1, "target": 1, "reason": "hold"} for i in range(points)]
    return {**base, "points": pts, **extra}


def test_resuming_stores_bounded_history_and_defers_again_with_the_state() -> None:
    from airflow.sdk.exceptions import TaskDeferred

    ti = FakeTI([{"t": -1, "queued": 0, "running": 0, "pool": 0, "target": 0, "reason": "first"}])
    s = sensor(history_length=3, cycles_per_event=7)
    with pytest.raises(TaskDeferred) as deferred:
        s.execute_complete({"ti": ti}, event(points=3), run_until=None)
    assert [p["t"] for p in ti.xcom["ray_pool_history"]] == [0, 1, 2]  # bounded, oldest dropped
    assert ti.xcom["ray_pool_state"] == event(0)["state"]
    trigger = deferred.value.trigger
    _, kwargs = trigger.serialize()
    assert (kwargs["seq"], kwargs["failures"], kwargs["cycles_per_event"]) == (40, 1, 7)
    assert kwargs["state"] == event(0)["state"]
    assert kwargs["run_key"] == "ray_pool_autoscaler/manual__1/size_ray_pool/1"
    assert deferred.value.method_name == "execute_complete"


def test_resuming_after_the_run_time_succeeds_with_a_summary() -> None:
    ti = FakeTI([])
    assert sensor().execute_complete({"ti": ti}, event(points=2, done=True)) == {"cycles": 40, "pool": 1, "target": 1}


def test_resuming_after_repeated_failures_fails_the_task_but_keeps_the_history() -> None:
    from airflow.sdk.exceptions import AirflowException

    ti = FakeTI([])
    with pytest.raises(AirflowException, match="5 ray pool cycles failed in a row"):
        sensor().execute_complete({"ti": ti}, event(points=1, error="5 ray pool cycles failed in a row; last: x"))
    assert len(ti.xcom["ray_pool_history"]) == 1
