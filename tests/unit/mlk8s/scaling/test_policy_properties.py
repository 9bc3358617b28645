"""Properties of the scaling policy over generated inputs: limits, busy workers, determinism, no flapping."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mlk8s.scaling.policy import (
    Decision,
    PolicyConfig,
    PolicyState,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
    decide,
)

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
        _, state = decide(now, specs, workers, draw(queues), draw(demands), config, state)
        now += draw(st.sampled_from([5.0, 10.0, 60.0]))
    return now, specs, workers, draw(queues), draw(demands), config, state


def _check(decisions: list[Decision], specs: list[WorkerGroupSpec], workers: list[Worker]) -> None:
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
    decisions, _ = decide(now, specs, workers, queue, demand, config, state)
    _check(decisions, specs, workers)


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_decisions_are_deterministic_and_ignore_input_order(scenario: tuple, rnd: random.Random) -> None:  # type: ignore[type-arg]
    now, specs, workers, queue, demand, config, state = scenario
    first = decide(now, specs, workers, queue, demand, config, state)
    shuffled_workers = list(workers)
    rnd.shuffle(shuffled_workers)
    shuffled_demand = list(demand)
    rnd.shuffle(shuffled_demand)
    carried = PolicyState.from_json(json.loads(json.dumps(state.to_json())))
    again = decide(now, specs, shuffled_workers, queue, shuffled_demand, config, carried)
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
        decisions, state = decide(now, specs, workers, queue, demand, config, state)
        _check(decisions, specs, workers)
        for d in decisions:
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
    at any decision in the window (growth is immediate, to the whole recommendation)."""
    history: list[tuple[float, int]] = []  # (time, workers asked for beyond the busy ones), "cpu" group
    now = 0.0
    state = PolicyState()
    for n_busy, n_idle, demand, dt in steps:
        workers = [Worker(f"cpu-b{i}", "cpu", busy=True, started_at=0.0) for i in range(n_busy)]
        workers += [Worker(f"cpu-i{i}", "cpu", busy=False, started_at=0.0) for i in range(n_idle)]
        decisions, state = decide(now, specs, workers, QueueSnapshot(), demand, config, state)
        _check(decisions, specs, workers)
        d = decisions[0]
        history.append((now, max(0, d.recommended - n_busy)))
        if d.recommended > d.current:
            assert d.target == d.recommended
        if d.target < d.current:
            asked = max(extra for t, extra in history if t > now - config.scale_down_window_s or t == now)
            assert d.target >= min(d.current, n_busy + asked, max(specs[0].max_workers, n_busy))
        now += dt
