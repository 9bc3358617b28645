"""The simulator: trace validation, the event semantics on hand-checkable traces, the CLI's JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlk8s.scaling import Decision, PolicyConfig, WorkerGroupSpec
from mlk8s.scaling.simulate import (
    TRACE_HEADER,
    FixedPool,
    IdleTimeout,
    PolicyAutoscaler,
    SimulationError,
    Task,
    TraceError,
    View,
    load_trace,
    main,
    simulate,
)

ONE_CPU = [WorkerGroupSpec("cpu", 0, 1, cpus_per_worker=1)]


def write(tmp_path: Path, body: str, header: str = ",".join(TRACE_HEADER)) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + body)
    return path


# --- trace validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "body", "words"),
    [
        ("submit,duration_s,cpus,gpus", "0,1,1,0\n", ["header", "submit_s,duration_s,cpus,gpus"]),
        (None, "0,-3,1,0\n", ["line 2", "duration_s", ">= 0"]),
        (None, "0,0,1,0\n", ["line 2", "duration_s=0", "positive"]),
        (None, "0,5,one,0\n", ["line 2", "cpus", "not a number"]),
        (None, "0,5,1,0\n1,5,0,0\n", ["line 3", "cpus=0 and gpus=0"]),
        (None, "0,5,1\n", ["line 2", "4"]),
        (None, "0,5,inf,0\n", ["cpus", "finite"]),
        (None, "", ["no tasks"]),
    ],
)
def test_bad_traces_are_rejected_with_the_line_field_and_fix(
    tmp_path: Path, header: str | None, body: str, words: list[str]
) -> None:
    path = write(tmp_path, body, header or ",".join(TRACE_HEADER))
    with pytest.raises(TraceError) as err:
        load_trace(path)
    for word in words:
        assert word in str(err.value)


def test_a_missing_trace_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope.csv")


def test_a_task_no_group_can_run_is_rejected_before_simulating(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no GPU worker group"):
        simulate([Task(0, 5, 1, 1)], ONE_CPU, FixedPool(), pod_start_s=0, interval_s=1)


def test_cli_reports_bad_input_as_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "0,5,1,0\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--trace", str(path), "--cpu-min", "3", "--cpu-max", "2"])
    assert exit_.value.code == 2
    assert "max_workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--trace", str(path), "--pod-start-s", "-1"])
    assert "--pod-start-s" in capsys.readouterr().err


# --- event semantics ------------------------------------------------------------------------------------


def test_fifo_queue_on_a_fixed_single_worker() -> None:
    # Three 1-CPU tasks on one 1-CPU worker, all at t=0: they run one after another.
    tasks = [Task(0, 10, 1, 0), Task(0, 20, 1, 0), Task(5, 10, 1, 0)]
    r = simulate(tasks, ONE_CPU, FixedPool(), pod_start_s=99, interval_s=1, initial=lambda g: g.max_workers)
    # Waits 0, 10 (starts at 10), 25 (submitted at 5, starts at 30); the run ends at 40.
    assert (r.p50, r.max, r.makespan_s) == (10, 25, 40)
    assert r.worker_hours == pytest.approx(40 / 3600)
    assert r.scale_events == 0


def test_a_worker_is_usable_pod_start_s_after_the_decision_that_asked_for_it() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 4, cpus_per_worker=1)]
    tasks = [Task(3, 10, 1, 0)]
    r = simulate(tasks, groups, PolicyAutoscaler(PolicyConfig()), pod_start_s=30, interval_s=10)
    # Seen at the decision at t=10, usable at t=40: waited 37 s. Billed from 10 to the end at 50.
    assert r.max == pytest.approx(37)
    assert r.worker_hours == pytest.approx(40 / 3600)
    assert r.scale_events == 1


def test_airflow_lead_lets_the_policy_start_workers_before_ray_sees_the_work() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 4, cpus_per_worker=1)]
    tasks = [Task(100, 10, 1, 0), Task(100, 10, 1, 0)]
    config = PolicyConfig(backlog_grace_workers=0)
    late = simulate(tasks, groups, PolicyAutoscaler(config), pod_start_s=30, interval_s=10)
    early = simulate(tasks, groups, PolicyAutoscaler(config), pod_start_s=30, interval_s=10, airflow_lead_s=30)
    assert late.max == pytest.approx(30)  # asked for at t=100, usable at 130
    assert early.max == pytest.approx(0)  # asked for at t=70 from Airflow's queue, usable at 100


def test_cpu_tasks_never_run_on_gpu_workers_and_idle_workers_time_out() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 2, 2), WorkerGroupSpec("gpu", 0, 1, 2, gpus_per_worker=1)]
    tasks = [Task(0, 50, 1, 0), Task(0, 50, 1, 1)]
    r = simulate(tasks, groups, IdleTimeout(idle_timeout_s=60), pod_start_s=10, interval_s=10)
    # One worker of each group, requested at t=0, both run to t=60; the GPU one counts as GPU time.
    assert r.worker_hours == pytest.approx(120 / 3600)
    assert r.gpu_worker_hours == pytest.approx(60 / 3600)


class RemovesBusy:
    def step(self, view: View) -> list[Decision]:
        out = []
        for g in view.groups:
            mine = [w for w in view.workers if w.group == g.name]
            busy = tuple(w.id for w in mine if w.busy)
            target = len(mine) - len(busy) if busy else max(len(mine), 1)
            out.append(Decision(g.name, len(mine), target, busy, "bad"))
        return out


def test_the_simulator_refuses_a_policy_that_removes_a_busy_worker() -> None:
    with pytest.raises(SimulationError, match="busy worker"):
        simulate([Task(0, 100, 1, 0)], ONE_CPU, RemovesBusy(), pod_start_s=0, interval_s=10)


# --- whole runs -----------------------------------------------------------------------------------------

small_traces = st.lists(
    st.builds(
        Task,
        submit_s=st.floats(0, 600).map(lambda x: round(x, 1)),
        duration_s=st.floats(1, 300).map(lambda x: round(x, 1)),
        cpus=st.sampled_from([1.0, 2.0]),
        gpus=st.sampled_from([0.0, 0.0, 1.0]),
    ),
    min_size=1,
    max_size=40,
).map(lambda ts: sorted(ts, key=lambda t: t.submit_s))


@settings(max_examples=30, deadline=None)
@given(small_traces, st.sampled_from([0.0, 30.0]), st.sampled_from([0.0, 60.0]))
def test_every_policy_runs_every_task_and_the_fixed_pool_costs_max_times_the_run(
    tasks: list[Task], lead: float, pod_start: float
) -> None:
    groups = [WorkerGroupSpec("cpu", 0, 3, 4), WorkerGroupSpec("gpu", 0, 2, 4, gpus_per_worker=1)]
    fixed = simulate(tasks, groups, FixedPool(), pod_start_s=pod_start, interval_s=10, initial=lambda g: g.max_workers)
    assert fixed.worker_hours == pytest.approx(5 * fixed.makespan_s / 3600)
    assert fixed.gpu_worker_hours == pytest.approx(2 * fixed.makespan_s / 3600)
    for autoscaler in (PolicyAutoscaler(PolicyConfig()), IdleTimeout()):
        r = simulate(tasks, groups, autoscaler, pod_start_s=pod_start, interval_s=10, airflow_lead_s=lead)
        last_submit = max(t.submit_s for t in tasks)
        assert r.makespan_s >= last_submit
        assert 0 <= r.p50 <= r.p95 <= r.max
        # A task never waits longer than a worker start plus the work queued ahead of it on a full pool.
        assert r.max <= pod_start + 20 + sum(t.duration_s for t in tasks)
        assert r.peak_workers <= 5


def test_cli_prints_one_json_object_with_every_documented_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "0,30,1,0\n0,30,1,0\n40,60,2,1\n")
    assert main(["--trace", str(path), "--pod-start-s", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks"] == 3 and out["pod_start_s"] == 20
    assert set(out["policies"]) == {"policy", "fixed_pool", "idle_timeout"}
    for figures in out["policies"].values():
        assert set(figures) >= {"worker_hours", "gpu_worker_hours", "queue_wait_s", "scale_events"}
        assert set(figures["queue_wait_s"]) == {"p50", "p95", "max"}
        assert all(math.isfinite(v) for v in figures["queue_wait_s"].values())
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for field in ("--trace", "--pod-start-s", "worker_hours", "gpu_worker_hours", "p95", "scale_events"):
        assert field in help_text


def test_with_gpu_pods_stuck_pending_the_policy_stops_growing_and_the_idle_timeout_baseline_does_not() -> None:
    groups = [WorkerGroupSpec("gpu", 0, 4, cpus_per_worker=4, gpus_per_worker=1)]
    tasks = [Task(0, 1000, 1, 1), Task(100, 10, 1, 1), Task(400, 10, 1, 1), Task(500, 10, 1, 1)]
    config = PolicyConfig(pending_timeout_s=120.0)
    kwargs = {"pod_start_s": 60.0, "interval_s": 10.0, "gpu_capacity": 1}
    ours = simulate(tasks, groups, PolicyAutoscaler(config), **kwargs)  # type: ignore[arg-type]
    idle = simulate(tasks, groups, IdleTimeout(), **kwargs)  # type: ignore[arg-type]
    # Both ask for a second pod at t=100, which cannot be placed; only ours stops there.
    assert ours.peak_workers == 2
    assert idle.peak_workers == 4
    # The first pod runs the long task (60-1060) then the three queued ones (to 1090); the pods that never
    # found a node cost nothing.
    for run in (ours, idle):
        assert run.makespan_s == pytest.approx(1090)
        assert run.worker_hours == pytest.approx(1090 / 3600)
