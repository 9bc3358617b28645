"""The autoscalers the simulator compares, each replayed on hand-checkable traces."""

from __future__ import annotations

import pytest

from mlk8s.scaling import FixedPool, IdleTimeout, PolicyAutoscaler, PolicyConfig, Simulation, Task, WorkerGroupSpec


def test_cpu_tasks_never_run_on_gpu_workers_and_idle_workers_time_out() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 2, 2), WorkerGroupSpec("gpu", 0, 1, 2, gpus_per_worker=1)]
    tasks = [Task(0, 50, 1, 0), Task(0, 50, 1, 1)]
    r = Simulation(tasks, groups, IdleTimeout(idle_timeout_s=60), pod_start_s=10, interval_s=10).run()
    # One worker of each group, requested at t=0, both run to t=60; the GPU one counts as GPU time.
    assert r.worker_hours == pytest.approx(120 / 3600)
    assert r.gpu_worker_hours == pytest.approx(60 / 3600)


def test_the_fixed_pool_never_changes_and_costs_max_workers_for_the_whole_run() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 3, 1)]
    r = Simulation(
        [Task(0, 10, 1, 0), Task(50, 10, 1, 0)],
        groups,
        FixedPool(),
        pod_start_s=30,
        interval_s=5,
        initial=lambda g: g.max_workers,
    ).run()
    assert (r.scale_events, r.peak_workers, r.p95) == (0, 3, 0)
    assert r.worker_hours == pytest.approx(3 * 60 / 3600)


def test_airflow_lead_lets_the_policy_start_workers_before_ray_sees_the_work() -> None:
    groups = [WorkerGroupSpec("cpu", 0, 4, cpus_per_worker=1)]
    tasks = [Task(100, 10, 1, 0), Task(100, 10, 1, 0)]
    config = PolicyConfig(backlog_grace_workers=0)
    late = Simulation(tasks, groups, PolicyAutoscaler(config), pod_start_s=30, interval_s=10).run()
    early = Simulation(tasks, groups, PolicyAutoscaler(config), pod_start_s=30, interval_s=10, airflow_lead_s=30).run()
    assert late.max == pytest.approx(30)  # asked for at t=100, usable at 130
    assert early.max == pytest.approx(0)  # asked for at t=70 from Airflow's queue, usable at 100


def test_with_gpu_pods_stuck_pending_the_policy_stops_growing_and_the_idle_timeout_baseline_does_not() -> None:
    groups = [WorkerGroupSpec("gpu", 0, 4, cpus_per_worker=4, gpus_per_worker=1)]
    tasks = [Task(0, 1000, 1, 1), Task(100, 10, 1, 1), Task(400, 10, 1, 1), Task(500, 10, 1, 1)]
    config = PolicyConfig(pending_timeout_s=120.0)
    kwargs = {"pod_start_s": 60.0, "interval_s": 10.0, "gpu_capacity": 1}
    ours = Simulation(tasks, groups, PolicyAutoscaler(config), **kwargs).run()  # type: ignore[arg-type]
    idle = Simulation(tasks, groups, IdleTimeout(), **kwargs).run()  # type: ignore[arg-type]
    # Both ask for a second pod at t=100, which cannot be placed; only ours stops there.
    assert ours.peak_workers == 2
    assert idle.peak_workers == 4
    # The first pod runs the long task (60-1060) then the three queued ones (to 1090); the pods that never
    # found a node cost nothing.
    for run in (ours, idle):
        assert run.makespan_s == pytest.approx(1090)
        assert run.worker_hours == pytest.approx(1090 / 3600)
