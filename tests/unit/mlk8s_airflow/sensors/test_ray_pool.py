"""The sensor: arguments checked before any work, its first cycle on the worker, the XComs it keeps (history,
state, errors) across deferrals, and how it ends."""

from __future__ import annotations

from typing import Any

import pytest

from mlk8s.scaling import PolicyState
from mlk8s_airflow.ray_pool.loop import CycleResult, RayPoolLoop
from mlk8s_airflow.sensors.ray_pool import RayPoolSensor

CPU = {"name": "cpu", "min_workers": 0, "max_workers": 4, "cpus_per_worker": 2}


def sensor(**overrides: Any) -> RayPoolSensor:
    kwargs: dict[str, Any] = {"groups": [CPU], "actuator": "local", "ray_address": "127.0.0.1:6379"}
    kwargs.update(overrides)
    return RayPoolSensor(task_id="ray_pool", **kwargs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"actuator": "kuberay"}, r"actuator='kuberay' is not a known actuator mode"),
        ({"groups": []}, "groups is empty"),
        ({"queue_pool": ""}, "pool=''"),
        ({"cycles_per_event": 0}, r"cycles_per_event=0"),
        ({"run_for_s": -1}, r"run_for_s=-1"),
        ({"policy": {"scale_down_windw_s": 5}}, r"policy\.scale_down_windw_s: unknown key"),
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


def test_settings_carry_every_argument() -> None:
    settings = sensor(
        policy={"scale_down_window_s": 60}, prewarm_dag_ids=["nightly"], local_pool_dir="/srv/pool", interval_s="5"
    ).settings()
    assert settings.policy.scale_down_window_s == 60 and settings.prewarm_dag_ids == ("nightly",)
    assert settings.local_pool_dir == "/srv/pool" and settings.interval_s == 5.0  # a rendered template: a string


class FakeTI:
    """The slice of a task instance the sensor uses: its identity and XCom."""

    dag_id, run_id, task_id, try_number = "ray_pool_autoscaler", "manual__1", "size_ray_pool", 1

    def __init__(self, **xcom: Any) -> None:
        self.xcom: dict[str, Any] = dict(xcom)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        assert task_ids == self.task_id
        return self.xcom.get(key)


def test_the_first_cycle_runs_on_the_worker_then_the_sensor_defers(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    def cycle(self: RayPoolLoop, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        return CycleResult([], PolicyState(), {"t": 1.0, "queued": 2, "running": 0, "pool": 0, "target": 1}, [])

    monkeypatch.setattr(RayPoolLoop, "cycle", cycle)
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(cycles_per_event=7).execute({"ti": ti})
    assert ti.xcom["ray_pool_history"] == [{"t": 1.0, "queued": 2, "running": 0, "pool": 0, "target": 1}]
    assert ti.xcom["ray_pool_errors"] == []
    _, kwargs = deferred.value.trigger.serialize()
    assert (kwargs["seq"], kwargs["cycles_per_event"], kwargs["failures"]) == (1, 7, 0)


def test_a_failing_first_cycle_fails_the_try_and_leaves_its_error_for_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowException

    def cycle(self: RayPoolLoop, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        raise RuntimeError("no local Ray pool named: set MLK8S_LOCAL_RAY_POOL")

    monkeypatch.setattr(RayPoolLoop, "cycle", cycle)
    ti = FakeTI()
    with pytest.raises(AirflowException, match="1 ray pool cycles failed in a row; last error: no local Ray pool"):
        sensor().execute({"ti": ti})
    (error,) = ti.xcom["ray_pool_errors"]
    assert error["cycle"] == 1 and error["message"] == "RuntimeError: no local Ray pool named: set MLK8S_LOCAL_RAY_POOL"
    assert ti.xcom["ray_pool_history"] == []


def event(points: int, **extra: Any) -> dict[str, Any]:
    state = PolicyState(recommendations={"cpu": ((50.0, 2),)}).to_json()
    base = {"state": state, "seq": 40, "failures": 1, "done": False, "error": None, "errors": []}
    pts = [{"t": i, "queued": i, "running": 0, "pool": 1, "target": 1, "reason": "hold"} for i in range(points)]
    return {**base, "points": pts, **extra}


def test_resuming_stores_bounded_history_and_errors_and_defers_again_with_the_state() -> None:
    from airflow.sdk.exceptions import TaskDeferred

    first = {"t": -1, "queued": 0, "running": 0, "pool": 0, "target": 0, "reason": "first"}
    ti = FakeTI(ray_pool_history=[first], ray_pool_errors=[{"t": 1.0, "cycle": 2, "message": "earlier"}])
    new_error = {"t": 9.0, "cycle": 39, "message": "ConnectionError: GCS unreachable"}
    s = sensor(history_length=3, cycles_per_event=7)
    with pytest.raises(TaskDeferred) as deferred:
        s.execute_complete({"ti": ti}, event(points=3, errors=[new_error]), run_until=None)
    assert [p["t"] for p in ti.xcom["ray_pool_history"]] == [0, 1, 2]  # bounded, oldest dropped
    assert [e["message"] for e in ti.xcom["ray_pool_errors"]] == ["earlier", "ConnectionError: GCS unreachable"]
    assert ti.xcom["ray_pool_state"] == event(0)["state"]
    _, kwargs = deferred.value.trigger.serialize()
    assert (kwargs["seq"], kwargs["failures"], kwargs["cycles_per_event"]) == (40, 1, 7)
    assert kwargs["state"] == event(0)["state"]
    assert kwargs["run_key"] == "ray_pool_autoscaler/manual__1/size_ray_pool/1"
    assert deferred.value.method_name == "execute_complete"


def test_resuming_after_the_run_time_succeeds_with_a_summary() -> None:
    ti = FakeTI()
    assert sensor().execute_complete({"ti": ti}, event(points=2, done=True)) == {"cycles": 40, "pool": 1, "target": 1}


def test_resuming_after_repeated_failures_fails_the_task_but_keeps_the_history_and_errors() -> None:
    from airflow.sdk.exceptions import AirflowException

    ti = FakeTI()
    errors = [{"t": float(i), "cycle": i, "message": "ConnectionError: down"} for i in range(5)]
    with pytest.raises(AirflowException, match="5 ray pool cycles failed in a row"):
        sensor().execute_complete(
            {"ti": ti}, event(points=1, errors=errors, error="5 ray pool cycles failed in a row; last: x")
        )
    assert len(ti.xcom["ray_pool_history"]) == 1
    assert len(ti.xcom["ray_pool_errors"]) == 5
