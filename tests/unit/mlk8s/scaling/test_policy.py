"""The scaling policy's decide(): limits, hysteresis, GPU routing, pre-warm, Pending pods, reasons; and its
properties over generated inputs (limits, busy workers, determinism, no flapping)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlk8s.scaling import (
    Decision,
    DecisionRequest,
    PolicyConfig,
    PolicyInputError,
    PolicyState,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
    decide,
)
from mlk8s.scaling.reasons import (
    CappedAtMax,
    DemandSummary,
    HoldForWindow,
    HoldWarm,
    PendingTooLong,
    Prewarm,
    RayDemandUnknown,
    ScaleUp,
    Unplaceable,
    WarmPool,
)
from mlk8s.scaling.warm_pool import LevelHistory, WarmLevel

CPU = WorkerGroupSpec("cpu", min_workers=0, max_workers=10, cpus_per_worker=4)
GPU = WorkerGroupSpec("gpu", min_workers=0, max_workers=3, cpus_per_worker=4, gpus_per_worker=1)
GROUPS = [CPU, GPU]
NO_QUEUE = QueueSnapshot()


def idle(i: int, group: str = "cpu", since: float = 0.0) -> Worker:
    return Worker(id=f"{group}-{i}", group=group, busy=False, started_at=0.0, idle_since=since)


def busy(i: int, group: str = "cpu") -> Worker:
    return Worker(id=f"{group}-{i}", group=group, busy=True, started_at=0.0)


def one(decisions: Sequence[Decision], group: str = "cpu") -> Decision:
    return next(d for d in decisions if d.group == group)


def run(
    now: float,
    workers: list[Worker],
    demand: list[ResourceDemand] | None = None,
    queue: QueueSnapshot | list[QueueSnapshot] = NO_QUEUE,
    config: PolicyConfig | None = None,
    state: PolicyState | None = None,
    groups: list[WorkerGroupSpec] | None = None,
) -> tuple[tuple[Decision, ...], PolicyState]:
    reply = decide(
        DecisionRequest(
            now=now,
            groups=groups or GROUPS,
            workers=workers,
            queues=[queue] if isinstance(queue, QueueSnapshot) else queue,
            demand=[] if demand is None else demand,
            config=config or PolicyConfig(),
            state=state or PolicyState(),
        )
    )
    return reply.decisions, reply.state


# --- scale up -------------------------------------------------------------------------------------------


def test_scales_up_in_one_decision_to_what_the_backlog_needs() -> None:
    # 2 busy workers, no room left; 10 one-CPU tasks pending need ceil(10 / 4) = 3 more.
    decisions, _ = run(0.0, [busy(1), busy(2)], [ResourceDemand(cpus=1, count=10)])
    d = one(decisions)
    assert (d.current, d.target, d.remove) == (2, 5, ())
    assert d.why[0] == ScaleUp(2, 5)
    assert d.reason.startswith("scale up 2 -> 5")


def test_growth_is_capped_at_max_workers_and_says_so() -> None:
    decisions, _ = run(0.0, [], [ResourceDemand(cpus=4, count=50)])
    d = one(decisions)
    assert d.target == CPU.max_workers
    assert CappedAtMax(CPU.max_workers) in d.why
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
    known = decide(DecisionRequest(0.0, GROUPS, [], [queue], [], config)).decisions
    unknown = decide(DecisionRequest(0.0, GROUPS, [], [queue], None, config)).decisions
    assert one(known).target == 0  # Ray says nothing waits: the 8 running tasks are placed already
    assert one(unknown).target == 2  # nothing known from Ray: 8 one-CPU tasks need 2 workers
    assert RayDemandUnknown(DemandSummary(count=8, cpus=8, gpus=0), need=2) in one(unknown).why
    assert "Ray demand unknown" in one(unknown).reason
    # The same 8 tasks already running on two full workers are not counted twice.
    placed = decide(DecisionRequest(0.0, GROUPS, [busy(1), busy(2)], [queue], None, config)).decisions
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
    assert decisions[0].why[-1] == Unplaceable(DemandSummary(count=1, cpus=64, gpus=0))
    assert "fit no group" in decisions[0].reason


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
    assert d.why[0] == HoldForWindow(current=6, recommended=4, asked=2, busy=4, window_s=60.0)
    assert d.reason.startswith("hold 6")
    # The ask for two held until the decision at 30 saw none: within a window of that, hold them still.
    decisions, state = run(61.0, drained, config=config, state=state)
    assert (one(decisions).target, one(decisions).remove) == (6, ())
    # A whole window without the ask: down to the busy workers, never touching them.
    decisions, state = run(90.0, drained, config=config, state=state)
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
    assert Prewarm(next_run=1000.0, need=3) in one(decisions).why
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
    assert PendingTooLong(size=2, pod="cpu-2", pending_s=400.0, timeout_s=300.0) in d.why
    assert "Pending" in d.reason and "pending_timeout_s" in d.reason


# --- bad input: each names the field and the fix --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"groups": []}, ["groups is empty"]),
        ({"groups": [CPU, CPU]}, ["duplicate names", "unique"]),
        ({"workers": [busy(1), busy(1)]}, ["duplicate ids"]),
        ({"workers": [busy(1, "tpu")]}, ["group 'tpu'", "WorkerGroupSpec"]),
        ({"now": math.nan}, ["now=", "finite"]),
        ({"queues": [3]}, ["queues has 3", "QueueSnapshot"]),
        ({"state": {}}, ["PolicyState.from_json"]),
    ],
)
def test_bad_decide_inputs_are_rejected_before_any_decision(kwargs: dict[str, object], words: list[str]) -> None:
    args: dict[str, object] = {"now": 0.0, "groups": GROUPS, "workers": [], "queues": [NO_QUEUE], "demand": []}
    args.update(kwargs)
    with pytest.raises(PolicyInputError) as err:
        DecisionRequest(**args)  # type: ignore[arg-type]
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


# --- properties over generated inputs ---------------------------------------------------------------

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def groups(draw: st.DrawFn) -> list[WorkerGroupSpec]:
    cpu_min = draw(st.integers(0, 3))
    out = [
        WorkerGroupSpec(
            "cpu",
            cpu_min,
            draw(st.integers(cpu_min, 12)),
            cpus_per_worker=draw(st.sampled_from([1.0, 2.0, 4.0, 8.0])),
        )
    ]
    if draw(st.booleans()):
        gpu_min = draw(st.integers(0, 2))
        out.append(
            WorkerGroupSpec(
                "gpu",
                gpu_min,
                draw(st.integers(gpu_min, 4)),
                cpus_per_worker=4.0,
                gpus_per_worker=draw(st.sampled_from([1.0, 2.0])),
            )
        )
    return out


@st.composite
def worker_lists(draw: st.DrawFn, specs: list[WorkerGroupSpec]) -> list[Worker]:
    workers = []
    for spec in specs:
        for i in range(draw(st.integers(0, spec.max_workers + 3))):
            kind = draw(st.sampled_from(["busy", "idle", "pending"]))
            started = draw(st.floats(0, 1000))
            workers.append(
                Worker(
                    id=f"{spec.name}-{i}",
                    group=spec.name,
                    busy=kind == "busy",
                    pending=kind == "pending",
                    started_at=started,
                    idle_since=started if kind == "idle" else None,
                    free_cpus=draw(st.sampled_from([None, 0.0, 1.0])) if kind == "busy" else None,
                )
            )
    return workers


demands = st.lists(
    st.builds(
        ResourceDemand,
        cpus=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
        gpus=st.sampled_from([0.0, 0.0, 1.0]),
        count=st.integers(0, 60),
    ),
    max_size=4,
)
queues = st.builds(
    QueueSnapshot,
    queued=st.integers(0, 50),
    scheduled=st.integers(0, 20),
    running=st.integers(0, 50),
    next_dagrun_run_after=st.none() | st.floats(0, 3000),
)
configs = st.builds(
    PolicyConfig,
    scale_down_window_s=st.sampled_from([0.0, 30.0, 60.0, 300.0]),
    backlog_grace_workers=st.integers(0, 2),
    prewarm_s=st.sampled_from([0.0, 300.0]),
    prewarm_demand=st.sampled_from([(), (ResourceDemand(cpus=2, count=6),)]),
    pending_timeout_s=st.sampled_from([60.0, 600.0]),
    warm_pool=st.booleans(),
)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[float, list[WorkerGroupSpec], list[Worker], QueueSnapshot, list, PolicyConfig, PolicyState]:  # type: ignore[type-arg]
    specs = draw(groups())
    workers = draw(worker_lists(specs))
    config = draw(configs)
    # A state from earlier decisions, as the sensor would carry it.
    state = PolicyState()
    now = 0.0
    for _ in range(draw(st.integers(0, 3))):
        state = decide(DecisionRequest(now, specs, workers, [draw(queues)], draw(demands), config, state)).state
        now += draw(st.sampled_from([5.0, 10.0, 60.0]))
    return now, specs, workers, draw(queues), draw(demands), config, state


def _check(decisions: Sequence[Decision], specs: list[WorkerGroupSpec], workers: list[Worker]) -> None:
    assert [d.group for d in decisions] == [s.name for s in specs]
    for spec, d in zip(specs, decisions):
        mine = [w for w in workers if w.group == spec.name]
        n_busy = sum(w.busy for w in mine)
        assert d.current == len(mine)
        # Within limits; only busy workers can hold a group above a lowered max.
        assert d.target >= spec.min_workers
        assert d.target <= max(spec.max_workers, n_busy)
        assert d.target >= n_busy
        # Removes exactly the surplus, only non-busy workers of this group, each once.
        assert len(d.remove) == max(0, d.current - d.target)
        assert len(set(d.remove)) == len(d.remove)
        removable = {w.id for w in mine if not w.busy}
        assert set(d.remove) <= removable
        assert d.reason
        if d.recommended > d.current:
            assert d.target == d.recommended  # growth is immediate and whole


@SETTINGS
@given(scenarios())
def test_targets_stay_within_limits_and_busy_workers_are_never_removed(scenario: tuple) -> None:  # type: ignore[type-arg]
    now, specs, workers, queue, demand, config, state = scenario
    reply = decide(DecisionRequest(now, specs, workers, [queue], demand, config, state))
    _check(reply.decisions, specs, workers)


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_decisions_are_deterministic_and_ignore_input_order(scenario: tuple, rnd: random.Random) -> None:  # type: ignore[type-arg]
    now, specs, workers, queue, demand, config, state = scenario
    first = decide(DecisionRequest(now, specs, workers, [queue], demand, config, state))
    shuffled_workers = list(workers)
    rnd.shuffle(shuffled_workers)
    shuffled_demand = list(demand)
    rnd.shuffle(shuffled_demand)
    carried = PolicyState.from_json(json.loads(json.dumps(state.to_json())))
    again = decide(DecisionRequest(now, specs, shuffled_workers, [queue], shuffled_demand, config, carried))
    assert again == first


@SETTINGS
@given(
    groups(),
    st.integers(0, 6),
    st.integers(0, 6),
    demands,
    queues,
    configs,
    st.sampled_from([5.0, 10.0, 30.0]),
)
def test_a_steady_input_never_flaps(
    specs: list[WorkerGroupSpec],
    n_busy: int,
    n_idle: int,
    demand: list[ResourceDemand],
    queue: QueueSnapshot,
    config: PolicyConfig,
    dt: float,
) -> None:
    """Apply each decision (new workers join idle) with the same input; each group's size moves one way only."""
    queue = dataclasses.replace(queue, next_dagrun_run_after=None)  # time passing alone must change nothing
    workers = [Worker(f"cpu-b{i}", "cpu", busy=True, started_at=0.0) for i in range(n_busy)]
    workers += [Worker(f"cpu-i{i}", "cpu", busy=False, started_at=0.0, idle_since=0.0) for i in range(n_idle)]
    state = PolicyState()
    sizes: dict[str, list[int]] = {s.name: [] for s in specs}
    serial = 0
    now = 0.0
    steps = int(2 * config.scale_down_window_s / dt) + 5
    for _ in range(steps):
        reply = decide(DecisionRequest(now, specs, workers, [queue], demand, config, state))
        state = reply.state
        _check(reply.decisions, specs, workers)
        for d in reply.decisions:
            sizes[d.group].append(d.target)
            workers = [w for w in workers if w.id not in d.remove]
            for _ in range(d.target - d.current):
                serial += 1
                workers.append(Worker(f"{d.group}-n{serial}", d.group, busy=False, started_at=now, idle_since=now))
        now += dt
    for series in sizes.values():
        steps_taken = [b - a for a, b in itertools.pairwise(series) if b != a]
        assert all(s > 0 for s in steps_taken) or all(s < 0 for s in steps_taken), series


@SETTINGS
@given(scenarios())
def test_state_round_trips_through_json(scenario: tuple) -> None:  # type: ignore[type-arg]
    *_, state = scenario
    text = json.dumps(state.to_json())
    assert PolicyState.from_json(json.loads(text)) == state


@SETTINGS
@given(
    groups(),
    configs,
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8), demands, st.sampled_from([5.0, 10.0, 40.0])), max_size=12),
)
def test_a_group_shrinks_only_to_what_the_demand_left_unasked_for_the_whole_window(
    specs: list[WorkerGroupSpec],
    config: PolicyConfig,
    steps: list[tuple[int, int, list[ResourceDemand], float]],
) -> None:
    """Whatever the input does, a scale-down keeps the busy workers plus the most extra the demand asked for
    at any decision in the window (growth is immediate, to the whole recommendation). The window's own
    property: the warm pool, which may release sooner where it has learnt to, is off."""
    config = dataclasses.replace(config, warm_pool=False)
    history: list[tuple[float, int]] = []  # (time, workers asked for beyond the busy ones), "cpu" group
    now = 0.0
    state = PolicyState()
    for n_busy, n_idle, demand, dt in steps:
        workers = [Worker(f"cpu-b{i}", "cpu", busy=True, started_at=0.0) for i in range(n_busy)]
        workers += [Worker(f"cpu-i{i}", "cpu", busy=False, started_at=0.0) for i in range(n_idle)]
        reply = decide(DecisionRequest(now, specs, workers, [], demand, config, state))
        state = reply.state
        _check(reply.decisions, specs, workers)
        d = reply.decisions[0]
        history.append((now, max(0, d.recommended - n_busy)))
        if d.recommended > d.current:
            assert d.target == d.recommended
        if d.target < d.current:
            asked = max(extra for t, extra in history if t > now - config.scale_down_window_s or t == now)
            assert d.target >= min(d.current, n_busy + asked, max(specs[0].max_workers, n_busy))
        now += dt


# --- recheck_at: when the same inputs may decide otherwise ------------------------------------------------


def recheck(now: float, workers: list[Worker], **kwargs: object) -> float | None:
    state = kwargs.pop("state", None) or PolicyState()
    return decide(
        DecisionRequest(now, GROUPS, workers, kwargs.pop("queues", [NO_QUEUE]), [], state=state, **kwargs)  # type: ignore[arg-type]
    ).recheck_at


def test_recheck_at_is_when_the_window_lets_idle_workers_go() -> None:
    config = PolicyConfig(scale_down_window_s=60.0)
    _, state = run(0.0, [busy(1)], [ResourceDemand(cpus=4, count=2)], config=config)
    drained = [busy(1), idle(2, since=20.0), idle(3, since=20.0)]
    reply = decide(DecisionRequest(30.0, GROUPS, drained, [NO_QUEUE], [], config, state))
    assert one(reply.decisions).target == 3  # held by the window
    assert reply.recheck_at == 90.0  # one window after the decision at 30 saw the ask end
    later = decide(DecisionRequest(90.0, GROUPS, drained, [NO_QUEUE], [], config, reply.state))
    assert one(later.decisions).target == 1
    assert later.recheck_at is None  # nothing left to expire: the same inputs hold for ever


def test_recheck_at_is_just_after_a_pending_pod_times_out() -> None:
    config = PolicyConfig(pending_timeout_s=300.0)
    pending = Worker(id="cpu-2", group="cpu", busy=False, started_at=0.0, pending=True)
    t = recheck(100.0, [busy(1), pending], config=config)
    assert t is not None and 300.0 < t < 300.0 + 1e-9


def test_recheck_at_is_when_pre_warming_begins_and_ends() -> None:
    config = PolicyConfig(prewarm_s=120.0, prewarm_demand=(ResourceDemand(cpus=4, count=3),))
    queues = [QueueSnapshot(next_dagrun_run_after=1000.0)]
    assert recheck(500.0, [], config=config, queues=queues) == 880.0
    t = recheck(900.0, [], config=config, queues=queues)
    assert t is not None and 1000.0 < t < 1000.0 + 1e-9
    assert recheck(500.0, [], config=PolicyConfig(), queues=queues) is None  # no pre-warm: the run time is moot


@SETTINGS
@given(scenarios(), st.floats(0.001, 0.999))
def test_the_same_inputs_decide_the_same_until_recheck_at(scenario: tuple, fraction: float) -> None:  # type: ignore[type-arg]
    now, specs, workers, queue, demand, config, state = scenario
    first = decide(DecisionRequest(now, specs, workers, [queue], demand, config, state))
    until = first.recheck_at if first.recheck_at is not None else now + 10 * 86400
    later_now = now + fraction * (until - now)
    assume(later_now < until)  # strictly before (no float lies between a time and the next one)
    later = decide(DecisionRequest(later_now, specs, workers, [queue], demand, config, first.state))
    assert [(d.target, d.remove) for d in later.decisions] == [(d.target, d.remove) for d in first.decisions]


# --- the adaptive warm pool (issue 14) -----------------------------------------------------------------


def test_a_trickle_with_nothing_running_starts_a_worker_from_airflow_s_queue_at_once() -> None:
    """The backlog grace rests on running tasks freeing room; with none running a queued task waits for a pod
    start either way, so the pool grows as soon as Airflow queues it, before Ray sees it."""
    decisions, _ = run(0.0, [], queue=QueueSnapshot(queued=1), config=PolicyConfig(backlog_grace_workers=2))
    assert one(decisions).target == 1
    # With a task running, the grace still absorbs a small backlog (the running task frees room soon).
    decisions, _ = run(0.0, [busy(1)], queue=QueueSnapshot(queued=1, running=1))
    assert one(decisions).target == 1


def warm(gaps: tuple[float, ...], since: float | None) -> PolicyState:
    """A state whose warm pool has seen ``gaps`` at level 1 of the CPU group, unwanted since ``since``."""
    return PolicyState(levels={"cpu": (LevelHistory(since, gaps),)})


def test_the_warm_pool_keeps_an_idle_worker_whose_work_came_back_soon_before() -> None:
    config = PolicyConfig(scale_down_window_s=0.0)  # the window alone would let it go at once
    state = warm((20.0, 30.0, 25.0), since=1000.0)
    decisions, state = run(1029.0, [idle(1, since=1000.0)], config=config, state=state)
    d = one(decisions)
    assert (d.target, d.remove) == (1, ())
    assert d.why[0] == HoldWarm(current=1, recommended=0, busy=0)
    assert WarmPool(1, 0, (WarmLevel(1, 1000.0, 29.0, 30.0, 3),), 60.0) in d.why
    assert "warm pool keeps" in d.reason
    reply = decide(
        DecisionRequest(
            1029.0, GROUPS, [idle(1, since=1000.0)], [NO_QUEUE], [], config, warm((20.0, 30.0, 25.0), since=1000.0)
        )
    )
    assert reply.recheck_at == 1030.0
    decisions, _ = run(1030.0, [idle(1, since=1000.0)], config=config, state=state)
    assert (one(decisions).target, one(decisions).remove) == (0, ("cpu-1",))


def test_the_warm_pool_releases_at_once_a_level_whose_work_came_back_late() -> None:
    config = PolicyConfig(scale_down_window_s=300.0)
    # The window still holds an ask for one worker from 60 s ago...
    window = {"cpu": ((940.0, 1), (960.0, 0)), "gpu": ((940.0, 0),)}
    long_gaps = PolicyState(recommendations=window, levels={"cpu": (LevelHistory(960.0, (4000.0, 5000.0, 4500.0)),)})
    decisions, _ = run(1000.0, [idle(1, since=960.0)], config=config, state=long_gaps)
    d = one(decisions)
    # ...but this level's work has always come back an hour later: it goes now.
    assert (d.target, d.remove) == (0, ("cpu-1",))
    assert isinstance(d.why[-1], WarmPool) and "warm pool releases" in d.reason
    off = PolicyConfig(scale_down_window_s=300.0, warm_pool=False)
    decisions, state = run(1000.0, [idle(1, since=960.0)], config=off, state=long_gaps)
    assert one(decisions).target == 1  # the window alone keeps it
    assert state.levels == {}  # and nothing is learnt


def test_the_warm_pool_learns_from_the_airflow_queue_it_sees() -> None:
    """Runs minutes apart, each one task: the policy sees queued, then running, then nothing."""
    config = PolicyConfig(scale_down_window_s=0.0)
    state = PolicyState()
    worker = [busy(1)]
    for start in (0.0, 100.0, 200.0, 300.0):
        _, state = run(start, [], queue=QueueSnapshot(queued=1), config=config, state=state)
        _, state = run(start + 10, worker, queue=QueueSnapshot(running=1), config=config, state=state)
        _, state = run(start + 70, [idle(1, since=start + 70)], config=config, state=state)  # done: idle 30 s
    assert state.levels["cpu"][0].gaps == (30.0, 30.0, 30.0)
    # The next run's worker stays warm through the same pause, and not much longer.
    decisions, _ = run(395.0, [idle(1, since=370.0)], config=config, state=state)
    assert one(decisions).target == 1
    decisions, _ = run(401.0, [idle(1, since=370.0)], config=config, state=state)
    assert one(decisions).target == 0


def test_the_warm_pool_never_keeps_a_gpu_worker_for_cpu_work() -> None:
    config = PolicyConfig(scale_down_window_s=0.0)
    state = PolicyState()
    cpu_trickle = [QueueSnapshot(queued=1), QueueSnapshot(running=1), QueueSnapshot()]
    for i in range(12):
        _, state = run(10.0 * i, [idle(1, "gpu", since=0.0)], queue=cpu_trickle[i % 3], config=config, state=state)
    assert "gpu" not in state.levels or all(not level.gaps for level in state.levels["gpu"])
    decisions, _ = run(200.0, [idle(1, "gpu", since=0.0)], config=config, state=state)
    assert (one(decisions, "gpu").target, one(decisions, "gpu").remove) == (0, ("gpu-1",))


def test_the_warm_pool_keeps_within_min_and_max_and_never_removes_a_busy_worker() -> None:
    spec = WorkerGroupSpec("cpu", min_workers=1, max_workers=2, cpus_per_worker=4)
    config = PolicyConfig(scale_down_window_s=0.0)
    levels = tuple(LevelHistory(0.0, (10.0, 10.0, 10.0)) for _ in range(4))  # every level: short gaps
    workers = [busy(1), idle(2), idle(3), idle(4)]  # above max, as after a lowered max_workers
    decisions, _ = run(5.0, workers, config=config, state=PolicyState(levels={"cpu": levels}), groups=[spec])
    d = one(decisions)
    assert d.target == 2 and "cpu-1" not in d.remove and len(d.remove) == 2


def test_state_of_a_sensor_started_before_the_warm_pool_is_still_read() -> None:
    old = {"version": 1, "recommendations": {"cpu": [[0.0, 2]]}}
    assert PolicyState.from_json(old) == PolicyState(recommendations={"cpu": ((0.0, 2),)})


@SETTINGS
@given(
    scenarios(),
    st.lists(
        st.tuples(st.none() | st.floats(0, 1000), st.lists(st.floats(0, 600), min_size=3, max_size=16)), max_size=12
    ),
)
def test_whatever_the_warm_pool_learnt_targets_stay_within_limits_and_busy_workers_stay(
    scenario: tuple,  # type: ignore[type-arg]
    learnt: list[tuple[float | None, list[float]]],
) -> None:
    now, specs, workers, queue, demand, config, state = scenario
    levels = tuple(LevelHistory(since, tuple(gaps)) for since, gaps in learnt)
    state = dataclasses.replace(state, levels={s.name: levels for s in specs})
    reply = decide(DecisionRequest(now + 1000, specs, workers, [queue], demand, config, state))
    _check(reply.decisions, specs, workers)
    assert PolicyState.from_json(json.loads(json.dumps(reply.state.to_json()))) == reply.state
