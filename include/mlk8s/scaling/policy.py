"""The Ray pool scaling policy: how many workers each group should have, and which idle ones to remove.

The policy is a pure function of its inputs (:func:`decide`): the sensor reads the Airflow queue and the Ray
demand, passes the time in, and carries :class:`PolicyState` between calls as a plain JSON dict (so it
survives reschedules, deferrals and sensor restarts). The same function drives the simulator, so what the
benchmarks measure is exactly what runs in production.

Times are seconds on one clock chosen by the caller (epoch seconds in the sensor, trace seconds in the
simulator). Memory is in bytes; 0 means "not constrained".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class PolicyInputError(ValueError):
    """Bad input to the policy; the message names the field and how to fix it."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise PolicyInputError(message)


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class WorkerGroupSpec:
    """One Ray worker group (a KubeRay ``workerGroupSpecs`` entry): its limits and the shape of one worker.

    A group with ``gpus_per_worker > 0`` is a GPU group: it grows only for demand that asks for GPUs.
    """

    name: str
    min_workers: int
    max_workers: int
    cpus_per_worker: float
    gpus_per_worker: float = 0.0
    memory_per_worker: float = 0.0

    def __post_init__(self) -> None:
        _require(
            isinstance(self.name, str) and bool(self.name),
            "WorkerGroupSpec.name is empty; give the group the name of its KubeRay workerGroupSpec",
        )
        where = f"WorkerGroupSpec {self.name!r}"
        _require(
            isinstance(self.min_workers, int) and self.min_workers >= 0,
            f"{where}: min_workers={self.min_workers!r}; set min_workers to an integer >= 0",
        )
        _require(
            isinstance(self.max_workers, int) and self.max_workers >= self.min_workers,
            f"{where}: max_workers={self.max_workers!r} < min_workers={self.min_workers!r}; "
            "set max_workers >= min_workers",
        )
        _require(
            _finite(self.cpus_per_worker) and self.cpus_per_worker > 0,
            f"{where}: cpus_per_worker={self.cpus_per_worker!r}; set it to the CPUs of one worker (> 0)",
        )
        _require(
            _finite(self.gpus_per_worker) and self.gpus_per_worker >= 0,
            f"{where}: gpus_per_worker={self.gpus_per_worker!r}; set it to 0 or the GPUs of one worker",
        )
        _require(
            _finite(self.memory_per_worker) and self.memory_per_worker >= 0,
            f"{where}: memory_per_worker={self.memory_per_worker!r}; set it to 0 (unconstrained) or bytes",
        )

    @property
    def is_gpu(self) -> bool:
        return self.gpus_per_worker > 0


@dataclass(frozen=True)
class Worker:
    """One worker pod of a group as the sensor sees it now.

    ``pending`` is a pod that is requested but not yet usable (Pending, or Running but not yet joined to
    Ray): it counts toward the group's size but offers no capacity. ``busy`` means Ray runs work on it; the
    policy never removes a busy worker. ``started_at`` is when the pod was requested (its creation time);
    ``idle_since``, when known, is when it last became idle, so the longest-idle worker is removed first.
    ``free_cpus``/``free_gpus``/``free_memory`` (Ray's available resources on the node), when known, let
    queued work count on the room left on busy workers before asking for new ones; unknown, a busy worker
    is taken as full.
    """

    id: str
    group: str
    busy: bool
    started_at: float
    pending: bool = False
    idle_since: float | None = None
    free_cpus: float | None = None
    free_gpus: float | None = None
    free_memory: float | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.id, str) and bool(self.id), "Worker.id is empty; pass the pod name")
        _require(
            _finite(self.started_at),
            f"Worker {self.id!r}: started_at={self.started_at!r}; pass the pod's creation time in seconds",
        )
        _require(
            not (self.busy and self.pending),
            f"Worker {self.id!r}: busy and pending at once; a pending pod runs no work, set busy=False",
        )
        _require(
            self.idle_since is None or _finite(self.idle_since),
            f"Worker {self.id!r}: idle_since={self.idle_since!r}; pass seconds or None",
        )
        for name in ("free_cpus", "free_gpus", "free_memory"):
            value = getattr(self, name)
            _require(
                value is None or (_finite(value) and value >= 0),
                f"Worker {self.id!r}: {name}={value!r}; pass Ray's available amount (>= 0) or None",
            )


@dataclass(frozen=True)
class QueueSnapshot:
    """Airflow task counts for the tasks that run on the Ray pool (by pool or queue), as the sensor read them.

    These counts lead Ray's own demand: a task is queued, then its driver pod starts, and only then does Ray
    see its work, so the policy can start workers while Ray's autoscaler would still see nothing.
    ``task_shape`` is what one task asks of Ray (default: ``PolicyConfig``'s ``*_per_task``); pass one
    snapshot per Airflow pool or queue when tasks of different shapes (e.g. GPU tasks) use different pools.
    ``next_dagrun_run_after`` (Airflow's ``next_dagrun_run_after`` of the DAG whose work runs on the pool,
    as seconds on the policy's clock) lets the policy pre-warm the pool ahead of the next scheduled run.
    """

    queued: int = 0
    scheduled: int = 0
    running: int = 0
    next_dagrun_run_after: float | None = None
    task_shape: ResourceDemand | None = None

    def __post_init__(self) -> None:
        for name in ("queued", "scheduled", "running"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                f"QueueSnapshot.{name}={value!r}; pass the count of task instances in that state (int >= 0)",
            )
        _require(
            self.next_dagrun_run_after is None or _finite(self.next_dagrun_run_after),
            f"QueueSnapshot.next_dagrun_run_after={self.next_dagrun_run_after!r}; pass seconds or None",
        )
        _require(
            self.task_shape is None or isinstance(self.task_shape, ResourceDemand),
            f"QueueSnapshot.task_shape={self.task_shape!r}; pass a ResourceDemand (count is ignored) or None",
        )

    @property
    def backlog(self) -> int:
        """Tasks that want the pool but have not started."""
        return self.queued + self.scheduled


@dataclass(frozen=True)
class ResourceDemand:
    """``count`` pending resource requests of one shape (Ray tasks/actors/bundles not placed yet)."""

    cpus: float
    gpus: float = 0.0
    memory: float = 0.0
    count: int = 1

    def __post_init__(self) -> None:
        for name in ("cpus", "gpus", "memory"):
            value = getattr(self, name)
            _require(
                _finite(value) and value >= 0,
                f"ResourceDemand.{name}={value!r}; pass a resource amount >= 0",
            )
        _require(
            isinstance(self.count, int) and not isinstance(self.count, bool) and self.count >= 0,
            f"ResourceDemand.count={self.count!r}; pass the number of requests of this shape (int >= 0)",
        )
        _require(
            self.cpus > 0 or self.gpus > 0 or self.memory > 0,
            "ResourceDemand asks for nothing (cpus=gpus=memory=0); drop it or give it a resource",
        )

    @property
    def needs_gpu(self) -> bool:
        return self.gpus > 0


@dataclass(frozen=True)
class PolicyConfig:
    """Tuning of the policy.

    - ``scale_down_window_s``: idle workers go only once the backlog has not asked for them during this
      window (the most workers the backlog asked for beyond the busy ones, over the window, is kept, like
      the Kubernetes HPA's scale-down stabilization window), so a steady input never flaps. The default is
      about one pod start: keeping an idle worker longer costs more than starting a new one when needed.
    - ``backlog_grace_workers``: how many workers' worth of Airflow backlog the pool absorbs without
      growing. The backlog is a forecast (Ray has not seen the work yet) and running tasks free room while
      new pods start, so a backlog smaller than this is cheaper to queue briefly than to start workers for;
      Ray's own pending demand always counts in full, and so does the whole backlog when deciding whether
      an idle worker may go.
    - ``cpus_per_task``/``gpus_per_task``/``memory_per_task``: the shape of one Airflow task on the pool
      (unless its :class:`QueueSnapshot` names one), used to turn task counts into demand.
    - ``prewarm_s`` and ``prewarm_demand``: within ``prewarm_s`` before ``next_dagrun_run_after`` the pool is
      sized for ``prewarm_demand`` (0 or empty: no pre-warming).
    - ``pending_timeout_s``: a group with a pod Pending longer than this stops growing (the cluster has no
      room for it; asking for more pods only adds more Pending pods).
    """

    scale_down_window_s: float = 60.0
    backlog_grace_workers: int = 2
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    memory_per_task: float = 0.0
    prewarm_s: float = 0.0
    prewarm_demand: tuple[ResourceDemand, ...] = ()
    pending_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("scale_down_window_s", "prewarm_s", "pending_timeout_s"):
            value = getattr(self, name)
            _require(
                _finite(value) and value >= 0,
                f"PolicyConfig.{name}={value!r}; pass a duration in seconds >= 0",
            )
        _require(
            isinstance(self.backlog_grace_workers, int) and self.backlog_grace_workers >= 0,
            f"PolicyConfig.backlog_grace_workers={self.backlog_grace_workers!r}; pass an integer >= 0",
        )
        _require(
            _finite(self.cpus_per_task) and self.cpus_per_task >= 0,
            f"PolicyConfig.cpus_per_task={self.cpus_per_task!r}; pass the CPUs one Airflow task uses (>= 0)",
        )
        _require(
            _finite(self.gpus_per_task) and self.gpus_per_task >= 0,
            f"PolicyConfig.gpus_per_task={self.gpus_per_task!r}; pass the GPUs one Airflow task uses (>= 0)",
        )
        _require(
            _finite(self.memory_per_task) and self.memory_per_task >= 0,
            f"PolicyConfig.memory_per_task={self.memory_per_task!r}; pass bytes (>= 0)",
        )
        _require(
            all(isinstance(d, ResourceDemand) for d in self.prewarm_demand),
            "PolicyConfig.prewarm_demand must be a tuple of ResourceDemand",
        )

    @property
    def task_demand(self) -> ResourceDemand | None:
        """The shape of one Airflow task, or None when Airflow counts are not used (all zero)."""
        if self.cpus_per_task == 0 and self.gpus_per_task == 0 and self.memory_per_task == 0:
            return None
        return ResourceDemand(cpus=self.cpus_per_task, gpus=self.gpus_per_task, memory=self.memory_per_task)


#: Key of the JSON form of :class:`PolicyState`, bumped when its layout changes.
STATE_VERSION = 1


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between decisions: what the backlog asked for recently, per group.

    ``recommendations[group]`` holds ``(time, workers)`` pairs from the scale-down window: how many workers
    beyond the busy ones the demand asked for at that time. Only pairs that can still be the window's
    maximum are kept (each is larger than every later one), so it stays a handful of entries. Treat it as
    opaque; round-trip it through :meth:`to_json`/:meth:`from_json`.
    """

    recommendations: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "recommendations": {
                group: [[t, n] for t, n in entries] for group, entries in sorted(self.recommendations.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PolicyState:
        """Rebuild the state; None or ``{}`` is a fresh state (first run of the sensor)."""
        if not data:
            return cls()
        _require(
            isinstance(data, Mapping) and data.get("version") == STATE_VERSION,
            f"PolicyState JSON has version {data.get('version')!r} (expected {STATE_VERSION}); "
            "pass the dict that PolicyState.to_json() produced, or None to start fresh",
        )
        raw = data.get("recommendations", {})
        _require(
            isinstance(raw, Mapping),
            "PolicyState JSON 'recommendations' must map group name to [[time, workers], ...]",
        )
        out: dict[str, tuple[tuple[float, int], ...]] = {}
        for group, entries in raw.items():
            parsed: list[tuple[float, int]] = []
            for entry in entries:
                ok = (
                    isinstance(entry, Sequence)
                    and len(entry) == 2
                    and _finite(entry[0])
                    and isinstance(entry[1], int)
                    and entry[1] >= 0
                )
                _require(
                    ok,
                    f"PolicyState JSON recommendations[{group!r}] has entry {entry!r}; "
                    "expected [time_s, workers>=0] (pass None to start fresh)",
                )
                parsed.append((float(entry[0]), int(entry[1])))
            out[str(group)] = tuple(parsed)
        return cls(recommendations=out)


@dataclass(frozen=True)
class Decision:
    """What one group should become.

    ``target`` is the group's size after the actuator acts (pending pods included); when it is below
    ``current``, ``remove`` names exactly ``current - target`` workers to delete, none of them busy (pending
    pods first, then the longest-idle). When it is above, the actuator adds pods. ``recommended`` is the
    size the current demand alone calls for (before the scale-down window), kept for the UI's time series.
    """

    group: str
    current: int
    target: int
    remove: tuple[str, ...]
    reason: str
    recommended: int = 0

    @property
    def changes(self) -> bool:
        return self.target != self.current

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "current": self.current,
            "target": self.target,
            "remove": list(self.remove),
            "reason": self.reason,
            "recommended": self.recommended,
        }


# A request fits when it needs at most what is left; this absorbs float noise such as 0.1 + 0.2.
_EPS = 1e-9


def _fits(request: ResourceDemand, spec: WorkerGroupSpec) -> bool:
    return (
        request.cpus <= spec.cpus_per_worker + _EPS
        and request.gpus <= spec.gpus_per_worker + _EPS
        and (spec.memory_per_worker == 0 or request.memory <= spec.memory_per_worker + _EPS)
    )


def group_for(request: ResourceDemand, groups: Sequence[WorkerGroupSpec]) -> WorkerGroupSpec | None:
    """The group a request grows: the smallest worker it fits, GPU groups only for GPU work.

    CPU-only work never goes to a GPU group, so a GPU worker is never added or kept for it; work that fits no
    group returns None (the caller reports it rather than growing a group that cannot run it).
    """
    candidates = [g for g in groups if g.is_gpu == request.needs_gpu and _fits(request, g)]
    if not candidates:
        return None
    order = {g.name: i for i, g in enumerate(groups)}
    return min(
        candidates,
        key=lambda g: (g.gpus_per_worker, g.cpus_per_worker, g.memory_per_worker, order[g.name]),
    )


def workers_needed(
    requests: Iterable[ResourceDemand],
    spec: WorkerGroupSpec,
    rooms: Iterable[tuple[float, float, float]] = (),
) -> int:
    """How many new workers of ``spec`` hold ``requests`` beyond ``rooms`` (first-fit decreasing by shape).

    ``rooms`` is the (cpus, gpus, memory) left on workers that already exist and stay anyway. Identical
    workers are tracked as (room left, how many) so a backlog of thousands of tasks costs a few steps per
    distinct shape, not per task.
    """
    memory_cap = spec.memory_per_worker if spec.memory_per_worker > 0 else math.inf
    full = (float(spec.cpus_per_worker), float(spec.gpus_per_worker), float(memory_cap))
    merged: dict[tuple[float, float, float], int] = {}
    for r in requests:
        if r.count > 0:
            key = (r.gpus, r.cpus, r.memory)
            merged[key] = merged.get(key, 0) + r.count
    bins: dict[tuple[float, float, float], int] = {}
    for room in rooms:
        bins[room] = bins.get(room, 0) + 1
    total = 0

    def per_bin(room: tuple[float, float, float], gpus: float, cpus: float, memory: float) -> int:
        limits = [
            math.floor(have / want + _EPS)
            for have, want in ((room[0], cpus), (room[1], gpus), (room[2], memory))
            if want > 0
        ]
        return max(0, min(limits)) if limits else 0

    for (gpus, cpus, memory), count in sorted(merged.items(), reverse=True):
        left = count
        for room in sorted(bins, reverse=True):
            if left == 0:
                break
            k = per_bin(room, gpus, cpus, memory)
            if k == 0:
                continue
            nbins = bins[room]
            whole = min(nbins, left // k)
            used: list[tuple[tuple[float, float, float], int]] = []
            if whole:
                used.append(((room[0] - k * cpus, room[1] - k * gpus, room[2] - k * memory), whole))
                left -= whole * k
            if left and left < k and whole < nbins:
                used.append(((room[0] - left * cpus, room[1] - left * gpus, room[2] - left * memory), 1))
                whole += 1
                left = 0
            bins[room] = nbins - whole
            if bins[room] == 0:
                del bins[room]
            for new_room, n in used:
                bins[new_room] = bins.get(new_room, 0) + n
        if left == 0:
            continue
        k = per_bin(full, gpus, cpus, memory)
        if k == 0:  # does not fit an empty worker; group_for keeps such requests away
            continue
        nnew, last = divmod(left, k)
        if nnew:
            room = (full[0] - k * cpus, full[1] - k * gpus, full[2] - k * memory)
            bins[room] = bins.get(room, 0) + nnew
        if last:
            room = (full[0] - last * cpus, full[1] - last * gpus, full[2] - last * memory)
            bins[room] = bins.get(room, 0) + 1
        total += nnew + (1 if last else 0)
    return total


def _describe(requests: Sequence[ResourceDemand]) -> str:
    count = sum(r.count for r in requests)
    cpus = sum(r.cpus * r.count for r in requests)
    gpus = sum(r.gpus * r.count for r in requests)
    text = f"{count} request(s), {cpus:g} CPU"
    return text + (f", {gpus:g} GPU" if gpus else "")


def _room(worker: Worker, spec: WorkerGroupSpec) -> tuple[float, float, float]:
    """Room left on a busy worker; what Ray did not report is taken as used (memory unconstrained: room)."""
    memory: float
    if spec.memory_per_worker == 0:
        memory = math.inf
    else:
        memory = worker.free_memory or 0.0
    return (worker.free_cpus or 0.0, worker.free_gpus or 0.0, memory)


def _removal_order(worker: Worker) -> tuple[int, float, str]:
    # Pending pods first (they are not capacity), the longest-waiting first; then the longest-idle worker.
    if worker.pending:
        return (0, worker.started_at, worker.id)
    idle_since = worker.idle_since if worker.idle_since is not None else worker.started_at
    return (1, idle_since, worker.id)


def _shape(shape: ResourceDemand, count: int) -> ResourceDemand:
    return ResourceDemand(cpus=shape.cpus, gpus=shape.gpus, memory=shape.memory, count=count)


def _validate(groups: Sequence[WorkerGroupSpec], workers: Sequence[Worker], now: float) -> None:
    _require(_finite(now), f"now={now!r}; pass the current time in seconds (a finite number)")
    _require(bool(groups), "groups is empty; pass one WorkerGroupSpec per Ray worker group")
    for g in groups:
        _require(isinstance(g, WorkerGroupSpec), f"groups has {g!r}; pass WorkerGroupSpec objects")
    names = [g.name for g in groups]
    dupes = sorted({n for n in names if names.count(n) > 1})
    _require(not dupes, f"groups has duplicate names {dupes}; give each WorkerGroupSpec a unique name")
    ids = [w.id for w in workers]
    dup_ids = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    _require(not dup_ids, f"workers has duplicate ids {dup_ids}; pass each pod once")
    for w in workers:
        _require(
            w.group in names,
            f"Worker {w.id!r} is in group {w.group!r}, which is not in groups {names}; "
            "pass that group's WorkerGroupSpec or leave the worker out",
        )


def decide(
    now: float,
    groups: Sequence[WorkerGroupSpec],
    workers: Iterable[Worker],
    queue: QueueSnapshot | Sequence[QueueSnapshot],
    demand: Iterable[ResourceDemand] | None,
    config: PolicyConfig,
    state: PolicyState,
) -> tuple[list[Decision], PolicyState]:
    """One decision per group (in the order of ``groups``), and the state to pass to the next call.

    A group's *need* is its busy workers plus the new workers that the waiting work fills after the room
    left on the busy ones: Ray's pending demand in full, plus Airflow's backlog (queued + scheduled tasks,
    which Ray has not seen yet) beyond ``backlog_grace_workers``. Pass ``demand=None`` when Ray's demand
    cannot be read: then all of Airflow's tasks, running ones included, stand in for it. Near the next DAG
    run the need is at least the pre-warm demand. Growth is immediate, to the whole need; idle workers go
    only once the backlog has not asked for them during the scale-down window; busy workers never go.
    """
    groups = list(groups)
    workers = list(workers)
    _validate(groups, workers, now)
    _require(isinstance(state, PolicyState), "state must be a PolicyState (PolicyState.from_json(None) to start)")
    names = [g.name for g in groups]
    snapshots = [queue] if isinstance(queue, QueueSnapshot) else list(queue)
    for q in snapshots:
        _require(isinstance(q, QueueSnapshot), f"queue has {q!r}; pass a QueueSnapshot or a list of them")

    unplaceable: list[ResourceDemand] = []

    def route(requests: Iterable[ResourceDemand]) -> dict[str, list[ResourceDemand]]:
        out: dict[str, list[ResourceDemand]] = {n: [] for n in names}
        for d in sorted(requests, key=lambda d: (d.gpus, d.cpus, d.memory, d.count)):
            if d.count:
                g = group_for(d, groups)
                (out[g.name] if g else unplaceable).append(d)
        return out

    ray_known = demand is not None
    pending_by_group = route(demand or ())
    backlog: list[ResourceDemand] = []
    everything: list[ResourceDemand] = []
    running: list[ResourceDemand] = []
    for q in snapshots:
        shape = q.task_shape or config.task_demand
        if shape is not None:
            backlog.append(_shape(shape, q.backlog))
            everything.append(_shape(shape, q.backlog + q.running))
            running.append(_shape(shape, q.running))
    backlog_by_group = route(backlog)
    # Airflow tasks that run now hold their share of the pool: a driver that has started but not yet
    # submitted its Ray work (a pod still starting) must find the workers it was queued for still there.
    running_by_group = route(running)
    # Without Ray's demand, running tasks may be waiting on Ray too: the pool must at least hold all of
    # Airflow's tasks at once (packed, so the ones already on busy workers are not counted twice).
    floor_by_group = route(() if ray_known else everything)

    runs_after = [q.next_dagrun_run_after for q in snapshots if q.next_dagrun_run_after is not None]
    next_run = min(runs_after) if runs_after else None
    prewarming = next_run is not None and config.prewarm_s > 0 and next_run - config.prewarm_s <= now <= next_run
    prewarm_by_group = route(config.prewarm_demand if prewarming else ())

    decisions: list[Decision] = []
    new_history: dict[str, tuple[tuple[float, int], ...]] = {}
    horizon = now - config.scale_down_window_s
    window = f"{config.scale_down_window_s:g} s"
    for spec in groups:
        mine = sorted((w for w in workers if w.group == spec.name), key=lambda w: w.id)
        current = len(mine)
        busy = sum(1 for w in mine if w.busy)
        pending = [w for w in mine if w.pending]
        idle = current - busy - len(pending)
        why = [f"{current} worker(s): {busy} busy, {idle} idle, {len(pending)} pending"]

        slack = [_room(w, spec) for w in mine if w.busy]
        ray_pending = pending_by_group[spec.name]
        queued_work = backlog_by_group[spec.name]
        for_ray = workers_needed(ray_pending, spec, slack)
        for_all = workers_needed(ray_pending + queued_work, spec, slack)
        grace = min(for_all - for_ray, config.backlog_grace_workers)
        need = busy + for_all - grace
        floor = workers_needed(floor_by_group[spec.name], spec)
        if floor > need:
            why.append(f"Ray demand unknown: all {_describe(floor_by_group[spec.name])} of Airflow need {floor}")
            need = floor
        if ray_pending:
            why.append(f"Ray pending {_describe(ray_pending)}")
        if queued_work:
            why.append(f"Airflow backlog {_describe(queued_work)}")
        if ray_pending or queued_work:
            why.append(f"need {need} = {busy} busy + {for_all} new" + (f" - {grace} grace" if grace else ""))
        prewarm_need = workers_needed(prewarm_by_group[spec.name], spec)
        if prewarm_need > need:
            why.append(f"pre-warm for the DAG run at {next_run:g}: {prewarm_need}")
            need = prewarm_need

        recommended = min(max(need, spec.min_workers), spec.max_workers)
        if need > spec.max_workers:
            why.append(f"capped at max_workers={spec.max_workers}")
        elif need < spec.min_workers:
            why.append(f"raised to min_workers={spec.min_workers}")
        stuck = [w for w in pending if now - w.started_at > config.pending_timeout_s]
        if stuck and recommended > current:
            oldest = min(stuck, key=lambda w: (w.started_at, w.id))
            why.append(
                f"not growing past {current}: pod {oldest.id} Pending {now - oldest.started_at:.0f} s "
                f"> pending_timeout_s={config.pending_timeout_s:g}"
            )
            recommended = max(current, spec.min_workers)

        # Remember how many workers beyond the busy ones the demand asked for, the whole backlog counted:
        # the grace only delays growth, it never removes an idle worker that queued work is about to use.
        # The window keeps only entries that can still be its maximum, so entries[0] is that maximum.
        held = workers_needed(running_by_group[spec.name], spec)
        wanted = min(max(busy + for_all, floor, held, spec.min_workers), spec.max_workers)
        extra = max(0, recommended - busy, wanted - busy)
        entries = [e for e in state.recommendations.get(spec.name, ()) if e[0] > horizon]
        while entries and entries[-1][1] <= extra:
            entries.pop()
        entries.append((now, extra))
        new_history[spec.name] = tuple(entries)
        kept = busy + entries[0][1]

        target = recommended if recommended >= current else min(current, max(kept, recommended))
        target = max(min(target, spec.max_workers), spec.min_workers, busy)
        if busy > spec.max_workers:
            why.append(f"{busy} busy worker(s) exceed max_workers={spec.max_workers}; waiting for them")

        remove: tuple[str, ...] = ()
        if target > current:
            action = f"scale up {current} -> {target}"
        elif target < current:
            removable = sorted((w for w in mine if not w.busy), key=_removal_order)
            remove = tuple(w.id for w in removable[: current - target])
            action = f"scale down {current} -> {target}, removing {', '.join(remove)}"
            if current > spec.max_workers and target == spec.max_workers:
                action += " (above max_workers)"
            else:
                action += f" (the backlog asked for at most {entries[0][1]} beyond the busy in the last {window})"
        elif recommended < current:
            action = (
                f"hold {current}: need {recommended} now, but the backlog asked for {entries[0][1]} "
                f"beyond the {busy} busy within the last {window} (scale-down window)"
            )
        else:
            action = f"hold {current}"
        decisions.append(
            Decision(
                group=spec.name,
                current=current,
                target=target,
                remove=remove,
                reason=f"{action}; " + "; ".join(why),
                recommended=recommended,
            )
        )
    if unplaceable:
        note = f"; {_describe(unplaceable)} fit no group (CPU work never goes to GPU groups), not scaling for it"
        first = decisions[0]
        decisions[0] = Decision(
            group=first.group,
            current=first.current,
            target=first.target,
            remove=first.remove,
            reason=first.reason + note,
            recommended=first.recommended,
        )
    return decisions, PolicyState(recommendations=new_history)
