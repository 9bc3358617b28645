"""The replay: the event semantics on hand-checkable traces, the rules it enforces, and whole runs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlk8s.scaling import (
    Decision,
    FixedPool,
    IdleTimeout,
    PolicyAutoscaler,
    PolicyConfig,
    Simulation,
    SimulationError,
    Task,
    View,
    WorkerGroupSpec,
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
    tasks = [Task(3, 10, 1, 0)]
    r = Simulation(tasks, groups, PolicyAutoscaler(PolicyConfig()), pod_start_s=30, interval_s=10).run()
    # Seen at the decision at t=10, usable at t=40: waited 37 s. Billed from 10 to the end at 50.
    assert r.max == pytest.approx(37)
    assert r.worker_hours == pytest.approx(40 / 3600)
    assert r.scale_events == 1


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
        last_submit = max(t.submit_s for t in tasks)
        assert r.makespan_s >= last_submit
        assert 0 <= r.p50 <= r.p95 <= r.max
        # A task never waits longer than a worker start plus the work queued ahead of it on a full pool.
        assert r.max <= pod_start + 20 + sum(t.duration_s for t in tasks)
        assert r.peak_workers <= 5
