"""The Ray pool scaling policy: how many workers each group should have, and which idle ones to remove.

A pure request/reply core in the manner of Ray autoscaler v2's ``schedule(SchedulingRequest) ->
SchedulingReply``: :func:`decide` takes everything it needs in one :class:`DecisionRequest` (the time, the
groups, the workers, Airflow's queue, Ray's demand, the tuning and the state from the last call) and returns a
:class:`DecisionReply` (one :class:`Decision` per group and the state for the next call). It reads no clock
and does no I/O, so the sensor and the simulator run exactly the same decisions. Reasons stay structured
(:mod:`mlk8s.scaling.reasons`) until each decision's text is made, once, when the reply is built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from mlk8s.scaling.model import (
    PolicyConfig,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
    is_finite,
    require,
)
from mlk8s.scaling.packing import group_for, room_of, workers_needed
from mlk8s.scaling.reasons import (
    AirflowBacklog,
    BusyAboveMax,
    CappedAtMax,
    Counts,
    DemandSummary,
    Hold,
    HoldForWindow,
    HoldWarm,
    Need,
    PendingTooLong,
    Prewarm,
    RaisedToMin,
    RayDemandUnknown,
    RayPending,
    Reason,
    ScaleDown,
    ScaleUp,
    Unplaceable,
    WarmPool,
    describe,
)
from mlk8s.scaling.state import PolicyState
from mlk8s.scaling.warm_pool import LevelHistory, observe, warm_keep
from mlk8s.scaling.window import update_window, window_expires_at


@dataclass(frozen=True)
class DecisionRequest:
    """Everything one decision needs.

    ``queues`` holds one :class:`QueueSnapshot` per Airflow pool or queue whose tasks run on the Ray pool.
    ``demand`` is Ray's pending demand; pass None when it cannot be read: then all of Airflow's tasks, running
    ones included, stand in for it. ``state`` is the previous reply's state (``PolicyState()`` the first time).
    """

    now: float
    groups: Sequence[WorkerGroupSpec]
    workers: Sequence[Worker] = ()
    queues: Sequence[QueueSnapshot] = ()
    demand: Sequence[ResourceDemand] | None = ()
    config: PolicyConfig = field(default_factory=PolicyConfig)
    state: PolicyState = field(default_factory=PolicyState)

    def __post_init__(self) -> None:
        # Tuples: the request is immutable and two equal requests compare equal whatever sequences were passed.
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "workers", tuple(self.workers))
        object.__setattr__(self, "queues", tuple(self.queues))
        if self.demand is not None:
            object.__setattr__(self, "demand", tuple(self.demand))
        require(is_finite(self.now), f"now={self.now!r}; pass the current time in seconds (a finite number)")
        require(bool(self.groups), "groups is empty; pass one WorkerGroupSpec per Ray worker group")
        for g in self.groups:
            require(isinstance(g, WorkerGroupSpec), f"groups has {g!r}; pass WorkerGroupSpec objects")
        names = [g.name for g in self.groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        require(not dupes, f"groups has duplicate names {dupes}; give each WorkerGroupSpec a unique name")
        ids = [w.id for w in self.workers]
        dup_ids = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        require(not dup_ids, f"workers has duplicate ids {dup_ids}; pass each pod once")
        for w in self.workers:
            require(
                w.group in names,
                f"Worker {w.id!r} is in group {w.group!r}, which is not in groups {names}; "
                "pass that group's WorkerGroupSpec or leave the worker out",
            )
        for q in self.queues:
            require(isinstance(q, QueueSnapshot), f"queues has {q!r}; pass a list of QueueSnapshot")
        require(isinstance(self.config, PolicyConfig), "config must be a PolicyConfig")
        require(
            isinstance(self.state, PolicyState), "state must be a PolicyState (PolicyState.from_json(None) to start)"
        )


@dataclass(frozen=True)
class Decision:
    """What one group should become.

    ``target`` is the group's size after the actuator acts (pending pods included); when it is below
    ``current``, ``remove`` names exactly ``current - target`` workers to delete, none of them busy (pending
    pods first, then the longest-idle). When it is above, the actuator adds pods. ``reason`` is the text of
    ``why`` (what the group does, then what that rests on). ``recommended`` is the size the current demand
    alone calls for (before the scale-down window).
    """

    group: str
    current: int
    target: int
    remove: tuple[str, ...]
    reason: str
    recommended: int = 0
    why: tuple[Reason, ...] = ()

    @property
    def changes(self) -> bool:
        return self.target != self.current


@dataclass(frozen=True)
class DecisionReply:
    """One decision per group (in the order of the request's groups), and the state for the next call.

    ``unplaceable`` is the demand that fits no group (reported on the first group's decision, never scaled for).
    ``recheck_at`` is the earliest time at which the same inputs may give other targets or removals (a window
    entry expires, a pre-warm begins or ends, a Pending pod reaches ``pending_timeout_s``); None: never. A
    caller whose inputs have not changed may skip the calls before it (the simulator does).
    """

    decisions: tuple[Decision, ...]
    state: PolicyState
    unplaceable: tuple[ResourceDemand, ...] = ()
    recheck_at: float | None = None


@dataclass
class _Routed:
    """The request's demand, split by the group each request grows."""

    ray_known: bool
    ray_pending: dict[str, list[ResourceDemand]]
    backlog: dict[str, list[ResourceDemand]]
    running: dict[str, list[ResourceDemand]]
    floor: dict[str, list[ResourceDemand]]
    prewarm: dict[str, list[ResourceDemand]]
    next_run: float | None
    unplaceable: list[ResourceDemand]


def _shape(shape: ResourceDemand, count: int) -> ResourceDemand:
    return ResourceDemand(cpus=shape.cpus, gpus=shape.gpus, memory=shape.memory, count=count)


def _route(request: DecisionRequest) -> _Routed:
    groups = request.groups
    unplaceable: list[ResourceDemand] = []

    def by_group(requests: Iterable[ResourceDemand]) -> dict[str, list[ResourceDemand]]:
        out: dict[str, list[ResourceDemand]] = {g.name: [] for g in groups}
        for d in sorted(requests, key=lambda d: (d.gpus, d.cpus, d.memory, d.count)):
            if d.count:
                g = group_for(d, groups)
                (out[g.name] if g else unplaceable).append(d)
        return out

    config = request.config
    ray_known = request.demand is not None
    backlog: list[ResourceDemand] = []
    everything: list[ResourceDemand] = []
    running: list[ResourceDemand] = []
    for q in request.queues:
        shape = q.task_shape or config.task_demand
        if shape is not None:
            backlog.append(_shape(shape, q.backlog))
            everything.append(_shape(shape, q.backlog + q.running))
            running.append(_shape(shape, q.running))
    runs_after = [q.next_dagrun_run_after for q in request.queues if q.next_dagrun_run_after is not None]
    next_run = min(runs_after) if runs_after else None
    now = request.now
    prewarming = next_run is not None and config.prewarm_s > 0 and next_run - config.prewarm_s <= now <= next_run
    return _Routed(
        ray_known=ray_known,
        ray_pending=by_group(request.demand or ()),
        backlog=by_group(backlog),
        # Airflow tasks that run now hold their share of the pool: a driver that has started but not yet
        # submitted its Ray work (a pod still starting) must find the workers it was queued for still there.
        running=by_group(running),
        # Without Ray's demand, running tasks may be waiting on Ray too: the pool must at least hold all of
        # Airflow's tasks at once (packed, so the ones already on busy workers are not counted twice).
        floor=by_group(() if ray_known else everything),
        prewarm=by_group(config.prewarm_demand if prewarming else ()),
        next_run=next_run,
        unplaceable=unplaceable,
    )


@dataclass(frozen=True)
class _Need:
    """What the waiting work asks of one group, before limits."""

    need: int  # workers the demand calls for now (the backlog grace applied)
    for_all: int  # new workers all waiting work needs beyond the busy ones' room (no grace)
    floor: int  # workers all of Airflow's tasks need when Ray's demand is unknown
    why: tuple[Reason, ...]


def _need(spec: WorkerGroupSpec, mine: Sequence[Worker], busy: int, routed: _Routed, config: PolicyConfig) -> _Need:
    why: list[Reason] = []
    slack = [room_of(w, spec) for w in mine if w.busy]
    ray_pending = routed.ray_pending[spec.name]
    queued_work = routed.backlog[spec.name]
    for_ray = workers_needed(ray_pending, spec, slack)
    for_all = workers_needed(ray_pending + queued_work, spec, slack)
    # The grace rests on running tasks freeing room while new pods start: with none running, none is freed.
    grace = min(for_all - for_ray, config.backlog_grace_workers, busy)
    need = busy + for_all - grace
    floor = workers_needed(routed.floor[spec.name], spec)
    if floor > need:
        why.append(RayDemandUnknown(DemandSummary.of(routed.floor[spec.name]), floor))
        need = floor
    if ray_pending:
        why.append(RayPending(DemandSummary.of(ray_pending)))
    if queued_work:
        why.append(AirflowBacklog(DemandSummary.of(queued_work)))
    if ray_pending or queued_work:
        why.append(Need(need=need, busy=busy, new=for_all, grace=grace))
    prewarm_need = workers_needed(routed.prewarm[spec.name], spec)
    if prewarm_need > need:
        assert routed.next_run is not None  # pre-warm demand is routed only ahead of a known run
        why.append(Prewarm(routed.next_run, prewarm_need))
        need = prewarm_need
    return _Need(need=need, for_all=for_all, floor=floor, why=tuple(why))


def _recommend(
    spec: WorkerGroupSpec, need: int, current: int, pending: Sequence[Worker], now: float, config: PolicyConfig
) -> tuple[int, tuple[Reason, ...]]:
    """The size the demand alone calls for: the need within min/max, not growing while pods stay Pending."""
    why: list[Reason] = []
    recommended = min(max(need, spec.min_workers), spec.max_workers)
    if need > spec.max_workers:
        why.append(CappedAtMax(spec.max_workers))
    elif need < spec.min_workers:
        why.append(RaisedToMin(spec.min_workers))
    stuck = [w for w in pending if now - w.started_at > config.pending_timeout_s]
    if stuck and recommended > current:
        oldest = min(stuck, key=lambda w: (w.started_at, w.id))
        why.append(PendingTooLong(current, oldest.id, now - oldest.started_at, config.pending_timeout_s))
        recommended = max(current, spec.min_workers)
    return recommended, tuple(why)


def _later(t: float, now: float) -> float:
    """When a change due at ``t`` can be seen from ``now``: at ``t``, or at the next call if ``t`` is not ahead
    (float rounding can leave a boundary that is due just unmet)."""
    return t if t > now else math.nextafter(now, math.inf)


def _group_recheck(
    entries: Sequence[tuple[float, int]], pending: Sequence[Worker], now: float, config: PolicyConfig
) -> float | None:
    """When the same inputs may decide otherwise for one group: the window's maximum leaves the window (one
    window after the next entry superseded it), or a Pending pod passes ``pending_timeout_s``."""
    expiry = window_expires_at(entries, config.scale_down_window_s)
    times = [] if expiry is None else [_later(expiry, now)]
    times += [
        _later(math.nextafter(w.started_at + config.pending_timeout_s, math.inf), now)
        for w in pending
        if now - w.started_at <= config.pending_timeout_s
    ]
    return min(times, default=None)


def _prewarm_recheck(routed: _Routed, now: float, config: PolicyConfig) -> float | None:
    """When pre-warming for the next DAG run begins (``prewarm_s`` before it) or ends (just after it)."""
    if routed.next_run is None or config.prewarm_s <= 0 or not config.prewarm_demand:
        return None
    begins = routed.next_run - config.prewarm_s
    return _later(begins, now) if now < begins else _later(math.nextafter(routed.next_run, math.inf), now)


@dataclass(frozen=True)
class _GroupOutcome:
    decision: Decision
    entries: tuple[tuple[float, int], ...]  # the scale-down window for the next call
    levels: tuple[LevelHistory, ...]  # what the warm pool knows of each level, for the next call
    recheck_at: float | None


def _removal_order(worker: Worker) -> tuple[int, float, str]:
    # Pending pods first (they are not capacity), the longest-waiting first; then the longest-idle worker.
    if worker.pending:
        return (0, worker.started_at, worker.id)
    idle_since = worker.idle_since if worker.idle_since is not None else worker.started_at
    return (1, idle_since, worker.id)


def _decide_group(spec: WorkerGroupSpec, request: DecisionRequest, routed: _Routed) -> _GroupOutcome:
    """One group's decision, its scale-down window for the next call, and when to look again."""
    config, now = request.config, request.now
    mine = sorted((w for w in request.workers if w.group == spec.name), key=lambda w: w.id)
    current = len(mine)
    busy = sum(1 for w in mine if w.busy)
    pending = [w for w in mine if w.pending]
    counts = Counts(current, busy, current - busy - len(pending), len(pending))

    need = _need(spec, mine, busy, routed, config)
    recommended, limits = _recommend(spec, need.need, current, pending, now, config)

    # Remember how many workers beyond the busy ones the demand asked for, the whole backlog counted:
    # the grace only delays growth, it never removes an idle worker that queued work is about to use.
    held = workers_needed(routed.running[spec.name], spec)
    wanted = min(max(busy + need.for_all, need.floor, held, spec.min_workers), spec.max_workers)
    extra = max(0, recommended - busy, wanted - busy)
    entries = update_window(request.state.recommendations.get(spec.name, ()), now, extra, config.scale_down_window_s)
    asked = entries[0][1]
    levels = observe(request.state.levels.get(spec.name, ()), busy + extra, now) if config.warm_pool else ()
    warm = warm_keep(levels, busy, current, busy + asked, now, config.cold_start_cost_s)
    kept = warm.kept

    target = recommended if recommended >= current else min(current, max(kept, recommended))
    target = max(min(target, spec.max_workers), spec.min_workers, busy)
    tail: tuple[Reason, ...] = (BusyAboveMax(busy, spec.max_workers),) if busy > spec.max_workers else ()

    remove: tuple[str, ...] = ()
    action: Reason
    if target > current:
        action = ScaleUp(current, target)
    elif target < current:
        removable = sorted((w for w in mine if not w.busy), key=_removal_order)
        remove = tuple(w.id for w in removable[: current - target])
        above_max = current > spec.max_workers and target == spec.max_workers
        action = ScaleDown(current, target, remove, above_max, asked, config.scale_down_window_s)
    elif recommended < current and kept > busy + asked:
        action = HoldWarm(current, recommended, busy)
    elif recommended < current:
        action = HoldForWindow(current, recommended, asked, busy, config.scale_down_window_s)
    else:
        action = Hold(current)
    warm_why: tuple[Reason, ...] = (WarmPool(kept, busy + asked, warm.verdicts, config.cold_start_cost_s),)
    why = (action, counts, *need.why, *limits, *tail, *(warm_why if warm.verdicts else ()))
    decision = Decision(
        group=spec.name,
        current=current,
        target=target,
        remove=remove,
        reason=describe(why),
        recommended=recommended,
        why=why,
    )
    release = None if warm.release_at is None else _later(warm.release_at, now)
    rechecks = [t for t in (_group_recheck(entries, pending, now, config), release) if t is not None]
    return _GroupOutcome(decision, entries, levels, min(rechecks, default=None))


def decide(request: DecisionRequest) -> DecisionReply:
    """One decision per group, and the state to pass to the next call.

    A group's *need* is its busy workers plus the new workers that the waiting work fills after the room
    left on the busy ones: Ray's pending demand in full, plus Airflow's backlog (queued + scheduled tasks,
    which Ray has not seen yet) beyond ``backlog_grace_workers``. Without Ray's demand, all of Airflow's
    tasks, running ones included, stand in for it. Near the next DAG run the need is at least the pre-warm
    demand. Growth is immediate, to the whole need; idle workers go only once the backlog has not asked for
    them during the scale-down window, or, for a level of the group whose idle gaps the warm pool has
    learnt, once it has been idle longer than its keep-alive; busy workers never go.
    """
    routed = _route(request)
    outcomes = [_decide_group(spec, request, routed) for spec in request.groups]
    decisions = [o.decision for o in outcomes]
    history = {spec.name: o.entries for spec, o in zip(request.groups, outcomes)}
    levels = {spec.name: o.levels for spec, o in zip(request.groups, outcomes) if o.levels}
    rechecks = [t for o in outcomes if (t := o.recheck_at) is not None]
    if (t := _prewarm_recheck(routed, request.now, request.config)) is not None:
        rechecks.append(t)
    if routed.unplaceable:
        first = decisions[0]
        why = (*first.why, Unplaceable(DemandSummary.of(routed.unplaceable)))
        decisions[0] = replace(first, reason=describe(why), why=why)
    return DecisionReply(
        decisions=tuple(decisions),
        state=PolicyState(recommendations=history, levels=levels),
        unplaceable=tuple(routed.unplaceable),
        recheck_at=min(rechecks, default=None),
    )
