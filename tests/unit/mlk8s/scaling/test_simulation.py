"""The replay: the event semantics on hand-checkable traces, the rules it enforces, whole runs, and the
skipped decision ticks, which change no figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlk8s.scaling import (
    Autoscaler,
    Decision,
    FixedPool,
    IdleTimeout,
    PolicyAutoscaler,
    PolicyConfig,
    ResourceDemand,
    Simulation,
    SimulationError,
    Task,
    View,
    WorkerGroupSpec,
    load_trace,
)

ONE_CPU = [WorkerGroupSpec("cpu", 0, 1, cpus_per_worker=1)]


def test_fifo_queue_on_a_fixed_single_worker() -> None:
    # Three 1-CPU tasks on one 1-CPU worker, all at t=0: they run one after another.
    tasks = [Task(0, 10, 1, 0), Task(0, 20, 1, 0), Task(5, 10, 1, 0)]
    r = Simulation(tasks, ONE_CPU, FixedPool(), pod_start_s=99, interval_s=1, initial=lambda g: g.max_workers).run()
    # Waits 0, 10 (starts at 10), 25 (submitted at 5, starts at 30); the run ends at 40.
    assert (r.p50, r.max, r.makespan_s) == (10, 25, 40)
    assert r.worker_hours == pytest.approx(40 / 3600)
    assert r.scale_events == 0


def test_a_worker_is_usable_pod_start_s_after_the_decision_that_asked_for_it() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 4, cpus_per_worker=1)]
    tasks = [Task(3, 200, 1, 0), Task(18, 10, 1, 0)]
    config = PolicyConfig(scale_down_window_s=0)  # an idle worker goes at the first decision it is idle
    r = Simulation(tasks, groups, PolicyAutoscaler(config), pod_start_s=30, interval_s=10).run()
    # The run starts when the first task is seen (t=3); decisions fall at 3, 13, 23, ...
    # The first task is seen at 3, its worker usable at 33: waited 30 s. The second, submitted at 18, is seen
    # at the decision at 23, its worker usable at 53: waited 35 s. Each worker is billed from its request to
    # its removal: the second one at 63, when its task ends on a decision tick; the first at the end.
    assert (r.p50, r.max) == (pytest.approx(32.5), pytest.approx(35))
    assert r.makespan_s == pytest.approx(233 - 3)
    assert r.worker_hours == pytest.approx(((233 - 3) + (63 - 23)) / 3600)
    assert r.scale_events == 4  # up at 3, up at 23, down at 63, down at 233 as the run ends


class RemovesBusy:
    def step(self, view: View) -> list[Decision]:
        out = []
        for g in view.groups:
            mine = [w for w in view.workers if w.group == g.name]
            busy = tuple(w.id for w in mine if w.busy)
            target = len(mine) - len(busy) if busy else max(len(mine), 1)
            out.append(Decision(g.name, len(mine), target, busy, "bad"))
        return out

    def recheck_at(self, view: View) -> float | None:
        return view.now


def test_the_simulator_refuses_a_policy_that_removes_a_busy_worker() -> None:
    with pytest.raises(SimulationError, match="busy worker"):
        Simulation([Task(0, 100, 1, 0)], ONE_CPU, RemovesBusy(), pod_start_s=0, interval_s=10).run()


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
    fixed = Simulation(
        tasks, groups, FixedPool(), pod_start_s=pod_start, interval_s=10, initial=lambda g: g.max_workers
    ).run()
    assert fixed.worker_hours == pytest.approx(5 * fixed.makespan_s / 3600)
    assert fixed.gpu_worker_hours == pytest.approx(2 * fixed.makespan_s / 3600)
    for autoscaler in (PolicyAutoscaler(PolicyConfig()), IdleTimeout()):
        r = Simulation(tasks, groups, autoscaler, pod_start_s=pod_start, interval_s=10, airflow_lead_s=lead).run()
        # The run starts when Airflow sees the first task and ends when the last one finishes.
        assert r.makespan_s >= tasks[-1].submit_s + tasks[-1].duration_s - (tasks[0].submit_s - lead)
        assert 0 <= r.p50 <= r.p95 <= r.max
        # A task never waits longer than a worker start plus the work queued ahead of it on a full pool.
        assert r.max <= pod_start + 20 + sum(t.duration_s for t in tasks)
        assert r.peak_workers <= 5


# --- event-driven: ticks skipped while nothing can change ----------------------------------------------


@dataclass
class Counted:
    """Another autoscaler, with its decisions counted; ``every_tick`` asks to decide at every tick (it never
    lets the simulator skip one)."""

    inner: Autoscaler
    every_tick: bool = False
    calls: int = 0

    def step(self, view: View) -> list[Decision]:
        self.calls += 1
        return self.inner.step(view)

    def recheck_at(self, view: View) -> float | None:
        return view.now if self.every_tick else self.inner.recheck_at(view)


def every_tick(inner: Autoscaler) -> Counted:
    return Counted(inner, every_tick=True)


TWO_GROUPS = [WorkerGroupSpec("cpu", 0, 3, 4), WorkerGroupSpec("gpu", 0, 2, 4, gpus_per_worker=1)]


@settings(max_examples=40, deadline=None)
@given(
    small_traces,
    st.sampled_from([0.0, 30.0]),
    st.sampled_from([0.0, 60.0]),
    st.sampled_from([0.0, 60.0, 300.0]),
    st.sampled_from([None, (100.0, 400.0)]),
    st.sampled_from([None, 1]),
    st.sampled_from([0, 1]),
)
def test_skipping_quiet_ticks_gives_the_figures_of_deciding_at_every_tick(
    tasks: list[Task],
    lead: float,
    pod_start: float,
    window: float,
    schedule: tuple[float, float] | None,
    gpu_capacity: int | None,
    cpu_min: int,
) -> None:
    groups = [WorkerGroupSpec("cpu", cpu_min, 3, 4), TWO_GROUPS[1]]
    config = PolicyConfig(
        scale_down_window_s=window,
        prewarm_s=90.0 if schedule else 0.0,
        prewarm_demand=(ResourceDemand(cpus=4, count=2),) if schedule else (),
        pending_timeout_s=120.0,
    )
    kwargs = {
        "pod_start_s": pod_start,
        "interval_s": 10.0,
        "airflow_lead_s": lead,
        "dagrun_schedule": schedule,
        "gpu_capacity": gpu_capacity,
    }
    for make in (lambda: PolicyAutoscaler(config), lambda: IdleTimeout(idle_timeout_s=window)):
        skipping = Counted(make())
        every = every_tick(make())
        fast = Simulation(tasks, groups, skipping, **kwargs).run()  # type: ignore[arg-type]
        slow = Simulation(tasks, groups, every, **kwargs).run()  # type: ignore[arg-type]
        assert fast == slow
        assert skipping.calls <= every.calls


@pytest.mark.timeout(60)
def test_a_month_of_quiet_costs_decisions_per_task_not_per_interval() -> None:
    """Two tasks thirty days apart: a decision every 10 s would be 259,200 decisions."""
    tasks = [Task(0, 60, 1, 0), Task(30 * 86400, 60, 1, 0)]
    for autoscaler in (PolicyAutoscaler(PolicyConfig()), IdleTimeout(), FixedPool()):
        counted = Counted(autoscaler)
        initial = (lambda g: g.max_workers) if isinstance(autoscaler, FixedPool) else (lambda g: g.min_workers)
        r = Simulation(tasks, TWO_GROUPS, counted, pod_start_s=60, interval_s=10, initial=initial).run()
        assert r.makespan_s == pytest.approx(30 * 86400 + 60 + (60 if not isinstance(autoscaler, FixedPool) else 0))
        assert counted.calls < 100, (type(autoscaler).__name__, counted.calls)


class Holds:
    """Never changes the pool."""

    def step(self, view: View) -> list[Decision]:
        out = []
        for g in view.groups:
            n = sum(1 for w in view.workers if w.group == g.name)
            out.append(Decision(g.name, n, n, (), "hold"))
        return out

    def recheck_at(self, view: View) -> float | None:
        return None


@dataclass
class Flaps:
    """Adds a worker, removes it at the next tick, and so on for ever."""

    seen: list[float] = field(default_factory=list)

    def step(self, view: View) -> list[Decision]:
        mine = [w for w in view.workers if w.group == "cpu"]
        if mine:
            return [Decision("cpu", 1, 0, (mine[0].id,), "down")]
        return [Decision("cpu", 0, 1, (), "up")]

    def recheck_at(self, view: View) -> float | None:
        return None


def test_work_that_can_never_start_is_reported_at_once_not_after_a_week() -> None:
    with pytest.raises(SimulationError, match="1 task\\(s\\) queued can never start"):
        Simulation([Task(0, 10, 1, 0)], ONE_CPU, Holds(), pod_start_s=0, interval_s=10).run()


def test_an_autoscaler_that_flaps_for_ever_is_stopped() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 1, cpus_per_worker=1)]
    tasks = [Task(0, 10, 2, 0)] if False else [Task(0, 10, 1, 0)]
    with pytest.raises(SimulationError, match="flaps"):
        # The pod takes longer to start than the autoscaler waits: it is removed before it is ever ready.
        Simulation(tasks, groups, Flaps(), pod_start_s=1e6, interval_s=10).run()


def test_skipping_ticks_changes_no_figure_on_the_low_rate_benchmark_trace_where_the_warm_pool_learns() -> None:
    """A day of ad-hoc runs: the warm pool has gaps to learn from, so its keep-alives set the skipped ticks."""
    tasks = load_trace(Path(__file__).resolve().parents[4] / "benchmarks" / "traces" / "adhoc.csv")
    for config in (PolicyConfig(), PolicyConfig(cold_start_cost_s=300.0)):
        kwargs = {"pod_start_s": 60.0, "interval_s": 10.0, "airflow_lead_s": 30.0}
        skipping = Counted(PolicyAutoscaler(config))
        every = every_tick(PolicyAutoscaler(config))
        assert (
            Simulation(tasks, TWO_GROUPS, skipping, **kwargs).run()
            == Simulation(tasks, TWO_GROUPS, every, **kwargs).run()
        )  # type: ignore[arg-type]
        assert skipping.calls < every.calls / 3
