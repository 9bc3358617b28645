"""The scaling policy: limits, hysteresis, GPU routing, pre-warm, Pending pods, reasons, JSON state."""

from __future__ import annotations

import json
import math

import pytest

from mlk8s.scaling.policy import (
    Decision,
    PolicyConfig,
    PolicyInputError,
    PolicyState,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
    decide,
    group_for,
    workers_needed,
)

CPU = WorkerGroupSpec("cpu", min_workers=0, max_workers=10, cpus_per_worker=4)
GPU = WorkerGroupSpec("gpu", min_workers=0, max_workers=3, cpus_per_worker=4, gpus_per_worker=1)
GROUPS = [CPU, GPU]
NO_QUEUE = QueueSnapshot()


def idle(i: int, group: str = "cpu", since: float = 0.0) -> Worker:
    return Worker(id=f"{group}-{i}", group=group, busy=False, started_at=0.0, idle_since=since)


def busy(i: int, group: str = "cpu") -> Worker:
    return Worker(id=f"{group}-{i}", group=group, busy=True, started_at=0.0)


def one(decisions: list[Decision], group: str = "cpu") -> Decision:
    return next(d for d in decisions if d.group == group)


def run(
    now: float,
    workers: list[Worker],
    demand: list[ResourceDemand] | None = None,
    queue: QueueSnapshot | list[QueueSnapshot] = NO_QUEUE,
    config: PolicyConfig | None = None,
    state: PolicyState | None = None,
    groups: list[WorkerGroupSpec] | None = None,
) -> tuple[list[Decision], PolicyState]:
    return decide(
        now,
        groups or GROUPS,
        workers,
        queue,
        [] if demand is None else demand,
        config or PolicyConfig(),
        state or PolicyState(),
    )


# --- scale up -------------------------------------------------------------------------------------------


def test_scales_up_in_one_decision_to_what_the_backlog_needs() -> None:
    # 2 busy workers, no room left; 10 one-CPU tasks pending need ceil(10 / 4) = 3 more.
    decisions, _ = run(0.0, [busy(1), busy(2)], [ResourceDemand(cpus=1, count=10)])
    d = one(decisions)
    assert (d.current, d.target, d.remove) == (2, 5, ())
    assert d.reason.startswith("scale up 2 -> 5")


def test_growth_is_capped_at_max_workers_and_says_so() -> None:
    decisions, _ = run(0.0, [], [ResourceDemand(cpus=4, count=50)])
    d = one(decisions)
    assert d.target == CPU.max_workers
    assert f"max_workers={CPU.max_workers}" in d.reason


def test_min_workers_is_kept_without_any_work() -> None:
    spec = WorkerGroupSpec("cpu", min_workers=2, max_workers=5, cpus_per_worker=4)
    decisions, _ = run(0.0, [], groups=[spec])
    assert one(decisions).target == 2
    # ... and never removed even long after everything went idle.
    decisions, _ = run(10_000.0, [idle(1), idle(2), idle(3)], groups=[spec])
    assert one(decisions).target == 2


def test_room_left_on_busy_workers_is_used_before_new_workers() -> None:
    roomy = [
        Worker(id=f"cpu-{i}", group="cpu", busy=True, started_at=0.0, free_cpus=3.0, free_gpus=0.0) for i in range(2)
    ]
    queue = QueueSnapshot(queued=6)  # Airflow's backlog: six 1-CPU tasks; six CPUs are free
    decisions, _ = run(0.0, roomy, queue=queue, config=PolicyConfig(backlog_grace_workers=0))
    assert one(decisions).target == 2
    full = [busy(1), busy(2)]  # room unknown: taken as full
    decisions, _ = run(0.0, full, queue=queue, config=PolicyConfig(backlog_grace_workers=0))
    assert one(decisions).target == 4


def test_airflow_backlog_grace_applies_to_the_forecast_but_not_to_ray_demand() -> None:
    config = PolicyConfig(backlog_grace_workers=1)
    # Three queued Airflow tasks fit one worker: absorbed by the grace.
    decisions, _ = run(0.0, [busy(1)], queue=QueueSnapshot(queued=3), config=config)
    assert one(decisions).target == 1
    # A backlog of 9 tasks needs 3 workers: 2 are started (one worker of grace).
    decisions, _ = run(0.0, [busy(1)], queue=QueueSnapshot(queued=9), config=config)
    assert one(decisions).target == 3
    # Ray's own pending demand is real now: one pending task starts a worker.
    decisions, _ = run(0.0, [busy(1)], [ResourceDemand(cpus=1)], config=config)
    assert one(decisions).target == 2


def test_without_ray_demand_the_running_airflow_tasks_count() -> None:
    queue = QueueSnapshot(queued=0, running=8)
    config = PolicyConfig(backlog_grace_workers=0)
    known, _ = decide(0.0, GROUPS, [], queue, [], config, PolicyState())
    unknown, _ = decide(0.0, GROUPS, [], queue, None, config, PolicyState())
    assert one(known).target == 0  # Ray says nothing waits: the 8 running tasks are placed already
    assert one(unknown).target == 2  # nothing known from Ray: 8 one-CPU tasks need 2 workers
    assert "Ray demand unknown" in one(unknown).reason
    # The same 8 tasks already running on two full workers are not counted twice.
    placed, _ = decide(0.0, GROUPS, [busy(1), busy(2)], queue, None, config, PolicyState())
    assert one(placed).target == 2


# --- GPU routing ----------------------------------------------------------------------------------------


def test_cpu_work_never_grows_a_gpu_group_and_gpu_work_grows_only_gpu_groups() -> None:
    decisions, _ = run(0.0, [], [ResourceDemand(cpus=1, count=40)])
    assert one(decisions, "gpu").target == 0
    assert one(decisions, "cpu").target == 10
    decisions, _ = run(0.0, [], [ResourceDemand(cpus=2, gpus=1, count=2)])
    assert one(decisions, "gpu").target == 2
    assert one(decisions, "cpu").target == 0


def test_an_idle_gpu_worker_is_not_kept_for_cpu_only_work() -> None:
    workers = [idle(1, "gpu"), busy(1)]
    state = PolicyState()
    for now in (0.0, 30.0, 61.0):
        decisions, state = run(now, workers, [ResourceDemand(cpus=1, count=100)], state=state)
    gpu = one(decisions, "gpu")
    assert (gpu.target, gpu.remove) == (0, ("gpu-1",))


def test_work_that_fits_no_group_is_reported_not_scaled_for() -> None:
    decisions, _ = run(0.0, [], [ResourceDemand(cpus=64)])
    assert all(d.target == 0 for d in decisions)
    assert "fit no group" in decisions[0].reason


def test_group_for_prefers_the_smallest_worker_that_fits() -> None:
    big = WorkerGroupSpec("big", 0, 5, cpus_per_worker=16)
    assert group_for(ResourceDemand(cpus=2), [big, CPU, GPU]) == CPU
    assert group_for(ResourceDemand(cpus=8), [big, CPU, GPU]) == big
    assert group_for(ResourceDemand(cpus=1, gpus=1), [big, CPU, GPU]) == GPU
    assert group_for(ResourceDemand(cpus=1, gpus=2), [big, CPU, GPU]) is None


# --- scale down -----------------------------------------------------------------------------------------


def test_scale_down_waits_for_the_window_then_removes_only_idle_workers() -> None:
    config = PolicyConfig(scale_down_window_s=60.0)
    workers = [busy(1), busy(2), busy(3), busy(4)]
    decisions, state = run(0.0, workers, [ResourceDemand(cpus=4, count=2)], config=config)
    assert one(decisions).target == 6
    # The backlog drained before the two new workers got work. Inside the window: hold them.
    drained = [*workers, idle(5, since=25.0), idle(6, since=25.0)]
    decisions, state = run(30.0, drained, config=config, state=state)
    d = one(decisions)
    assert (d.target, d.remove) == (6, ())
    assert d.reason.startswith("hold 6")
    # The window has passed with no backlog: down to the busy workers, never touching them.
    decisions, state = run(61.0, drained, config=config, state=state)
    d = one(decisions)
    assert (d.target, sorted(d.remove)) == (4, ["cpu-5", "cpu-6"])
    assert d.reason.startswith("scale down 6 -> 4")


def test_keeps_only_as_many_idle_workers_as_the_backlog_asked_for_in_the_window() -> None:
    config = PolicyConfig(scale_down_window_s=60.0)
    _, state = run(0.0, [busy(1), busy(2), busy(3)], [ResourceDemand(cpus=4)], config=config)
    # One more worker was asked for; then two workers finished their work. One idle worker is kept.
    later = [busy(1), idle(2, since=10.0), idle(3, since=12.0), idle(4, since=15.0)]
    decisions, _ = run(20.0, later, config=config, state=state)
    d = one(decisions)
    assert (d.target, d.remove) == (2, ("cpu-2", "cpu-3"))
    assert "asked for at most 1 beyond the busy" in d.reason


def test_removes_pending_pods_first_then_the_longest_idle() -> None:
    workers = [
        idle(1, since=50.0),
        idle(2, since=5.0),
        Worker(id="cpu-3", group="cpu", busy=False, started_at=90.0, pending=True),
        busy(4),
    ]
    decisions, _ = run(100.0, workers, config=PolicyConfig(scale_down_window_s=0.0))
    assert one(decisions).remove == ("cpu-3", "cpu-2", "cpu-1")


def test_busy_workers_above_a_lowered_max_are_kept_until_they_finish() -> None:
    small = WorkerGroupSpec("cpu", min_workers=0, max_workers=1, cpus_per_worker=4)
    decisions, _ = run(0.0, [busy(1), busy(2), idle(3)], groups=[small])
    d = one(decisions)
    assert (d.target, d.remove) == (2, ("cpu-3",))
    assert "exceed max_workers" in d.reason


# --- pre-warm and Pending pods --------------------------------------------------------------------------


def test_prewarms_ahead_of_the_next_dagrun_only() -> None:
    config = PolicyConfig(prewarm_s=120.0, prewarm_demand=(ResourceDemand(cpus=4, count=3),))
    near = QueueSnapshot(next_dagrun_run_after=1000.0)
    decisions, _ = run(900.0, [], queue=near, config=config)
    assert one(decisions).target == 3
    assert "pre-warm" in one(decisions).reason
    decisions, _ = run(500.0, [], queue=near, config=config)  # too early
    assert one(decisions).target == 0
    decisions, _ = run(900.0, [], queue=QueueSnapshot(), config=config)  # no scheduled run
    assert one(decisions).target == 0


def test_a_group_whose_pods_stay_pending_stops_growing() -> None:
    config = PolicyConfig(pending_timeout_s=300.0)
    stuck = [busy(1), Worker(id="cpu-2", group="cpu", busy=False, started_at=0.0, pending=True)]
    demand = [ResourceDemand(cpus=4, count=5)]
    decisions, _ = run(100.0, stuck, demand, config=config)
    assert one(decisions).target == 6  # pending for 100 s: still growing
    decisions, _ = run(400.0, stuck, demand, config=config)
    d = one(decisions)
    assert d.target == 2
    assert "Pending" in d.reason and "pending_timeout_s" in d.reason


# --- state ----------------------------------------------------------------------------------------------


def test_state_survives_a_json_round_trip_and_gives_the_same_decisions() -> None:
    workers = [busy(1), idle(2)]
    _, state = run(0.0, workers, [ResourceDemand(cpus=1, count=9)])
    carried = PolicyState.from_json(json.loads(json.dumps(state.to_json())))
    assert carried == state
    assert run(30.0, workers, state=carried) == run(30.0, workers, state=state)


def test_fresh_state_from_none_or_empty() -> None:
    assert PolicyState.from_json(None) == PolicyState()
    assert PolicyState.from_json({}) == PolicyState()


# --- packing --------------------------------------------------------------------------------------------


def test_workers_needed_packs_shapes_together() -> None:
    assert workers_needed([ResourceDemand(cpus=1, count=9)], CPU) == 3
    # 3+1 share a worker twice over.
    assert workers_needed([ResourceDemand(cpus=3, count=2), ResourceDemand(cpus=1, count=2)], CPU) == 2
    assert workers_needed([ResourceDemand(cpus=2, gpus=1, count=3)], GPU) == 3
    memory = WorkerGroupSpec("m", 0, 10, cpus_per_worker=8, memory_per_worker=16e9)
    assert workers_needed([ResourceDemand(cpus=1, memory=6e9, count=4)], memory) == 2
    assert workers_needed([ResourceDemand(cpus=1, count=2)], CPU, rooms=[(2.0, 0.0, math.inf)]) == 0


# --- bad input: each names the field and the fix --------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: WorkerGroupSpec("cpu", 3, 2, 4), ["max_workers", "min_workers"]),
        (lambda: WorkerGroupSpec("cpu", -1, 2, 4), ["min_workers", ">= 0"]),
        (lambda: WorkerGroupSpec("", 0, 2, 4), ["name"]),
        (lambda: WorkerGroupSpec("cpu", 0, 2, 0), ["cpus_per_worker", "> 0"]),
        (lambda: WorkerGroupSpec("cpu", 0, 2, 4, gpus_per_worker=-1), ["gpus_per_worker"]),
        (lambda: WorkerGroupSpec("cpu", 0, 2, 4, memory_per_worker=math.nan), ["memory_per_worker"]),
        (lambda: Worker("w", "cpu", busy=True, started_at=0, pending=True), ["busy and pending", "busy=False"]),
        (lambda: Worker("w", "cpu", busy=False, started_at=math.inf), ["started_at"]),
        (lambda: Worker("w", "cpu", busy=True, started_at=0, free_cpus=-1), ["free_cpus", ">= 0"]),
        (lambda: QueueSnapshot(queued=-1), ["QueueSnapshot.queued", "int >= 0"]),
        (lambda: QueueSnapshot(running=1.5), ["QueueSnapshot.running"]),  # type: ignore[arg-type]
        (lambda: ResourceDemand(cpus=-1), ["ResourceDemand.cpus", ">= 0"]),
        (lambda: ResourceDemand(cpus=0), ["asks for nothing"]),
        (lambda: ResourceDemand(cpus=1, count=-2), ["ResourceDemand.count"]),
        (lambda: PolicyConfig(scale_down_window_s=-5), ["scale_down_window_s", ">= 0"]),
        (lambda: PolicyConfig(backlog_grace_workers=-1), ["backlog_grace_workers"]),
        (lambda: PolicyConfig(cpus_per_task=-1), ["cpus_per_task"]),
        (lambda: PolicyState.from_json({"version": 99}), ["version", "to_json"]),
        (lambda: PolicyState.from_json({"version": 1, "recommendations": {"cpu": [[0, -1]]}}), ["workers>=0"]),
    ],
)
def test_bad_values_are_rejected_with_the_field_and_the_fix(make: object, words: list[str]) -> None:
    with pytest.raises(PolicyInputError) as err:
        make()  # type: ignore[operator]
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"groups": []}, ["groups is empty"]),
        ({"groups": [CPU, CPU]}, ["duplicate names", "unique"]),
        ({"workers": [busy(1), busy(1)]}, ["duplicate ids"]),
        ({"workers": [busy(1, "tpu")]}, ["group 'tpu'", "WorkerGroupSpec"]),
        ({"now": math.nan}, ["now=", "finite"]),
    ],
)
def test_bad_decide_inputs_are_rejected_before_any_decision(kwargs: dict[str, object], words: list[str]) -> None:
    args: dict[str, object] = {
        "now": 0.0,
        "groups": GROUPS,
        "workers": [],
        "queue": NO_QUEUE,
        "demand": [],
        "config": PolicyConfig(),
        "state": PolicyState(),
    }
    args.update(kwargs)
    with pytest.raises(PolicyInputError) as err:
        decide(**args)  # type: ignore[arg-type]
    for word in words:
        assert word in str(err.value)


def test_an_idle_worker_that_the_airflow_backlog_will_use_is_kept_even_within_the_grace() -> None:
    config = PolicyConfig(scale_down_window_s=0.0, backlog_grace_workers=2)
    workers = [busy(1), idle(2, since=0.0)]
    # Two queued tasks: too few to grow for (grace), but they will land on the idle worker: keep it.
    decisions, _ = run(100.0, workers, queue=QueueSnapshot(queued=2), config=config)
    assert (one(decisions).target, one(decisions).remove) == (2, ())
    decisions, _ = run(100.0, workers, queue=QueueSnapshot(queued=0), config=config)
    assert (one(decisions).target, one(decisions).remove) == (1, ("cpu-2",))


def test_idle_workers_are_held_while_airflow_tasks_of_the_pool_run() -> None:
    """A driver that has started (Airflow: running) but not yet submitted its Ray work must find the
    workers it was queued for: Ray reads them as idle, with no pending demand, yet none may go."""
    workers = [idle(i) for i in range(3)]
    config = PolicyConfig(scale_down_window_s=60, cpus_per_task=4)
    running = QueueSnapshot(running=2)
    decisions, state = run(1000.0, workers, demand=[], queue=running, config=config)
    assert one(decisions).target == 2
    assert set(one(decisions).remove) <= {w.id for w in workers}
    # Long after the window, still held for as long as the tasks run...
    decisions, state = run(2000.0, workers[:2], demand=[], queue=running, config=config, state=state)
    assert one(decisions).target == 2 and one(decisions).remove == ()
    # ...and released once they finish and the window has passed.
    decisions, state = run(2100.0, workers[:2], demand=[], queue=NO_QUEUE, config=config, state=state)
    decisions, _ = run(2200.0, workers[:2], demand=[], queue=NO_QUEUE, config=config, state=state)
    assert one(decisions).target == 0
