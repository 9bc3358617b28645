"""Replay a task trace against the scaling policy and two baselines; print one JSON object of figures.

``python -m mlk8s.scaling.simulate --trace TRACE.csv [--pod-start-s N]``

A discrete-event simulation: tasks join a FIFO queue when submitted and start as soon as a usable worker
has the CPUs/GPUs they ask for (in submission order, with later tasks of another shape allowed to start
when the head of the queue does not fit, as Ray does); a requested worker becomes usable ``--pod-start-s``
later and costs worker-time from the moment it is requested (the node is billed while the pod starts).
CPU-only tasks run only on CPU workers, GPU tasks only on GPU workers. Among workers with room, a task goes
to the fullest one, so lightly used workers drain and can be removed; the same placement serves every
policy. The autoscalers act every ``--interval-s`` seconds on what a sensor would see at that moment.

The policies compared:

- ``policy``: :func:`mlk8s.scaling.policy.decide`, fed Ray's pending demand by shape, each worker's free
  room, and Airflow's task counts as one queue snapshot per task shape (as if each shape had its own
  Airflow pool). A task is in Airflow's queue ``--airflow-lead-s`` before Ray sees its work (scheduling,
  executor and driver pod start), so the policy can start workers earlier than a Ray-only autoscaler;
  ``--airflow-lead-s 0`` removes that advantage. With ``--dagrun-period-s`` it also gets
  ``next_dagrun_run_after`` and pre-warms ``--prewarm-workers`` CPU workers ``--prewarm-s`` ahead;
- ``fixed_pool``: every group at its max for the whole run (started before the trace, no pod start);
- ``idle_timeout``: like KubeRay's default autoscaler: at each interval, launch the workers that the
  pending demand needs beyond those already starting (no upscaling-speed limit, which favours it), and
  remove a worker once it has been idle ``--idle-timeout-s`` seconds (KubeRay's default is 60).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlk8s.scaling import (
    Decision,
    DecisionRequest,
    PolicyConfig,
    PolicyState,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
    decide,
    group_for,
    workers_needed,
)

TRACE_HEADER = ("submit_s", "duration_s", "cpus", "gpus")

#: A run in which nothing starts or finishes for this long, with work still queued, is stuck.
STALL_S = 7 * 24 * 3600.0


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the line, the field and the fix."""


class SimulationError(RuntimeError):
    """A policy broke a rule the simulator enforces (removed a busy worker, inconsistent decision, stall)."""


@dataclass(frozen=True)
class Task:
    submit_s: float
    duration_s: float
    cpus: float
    gpus: float

    @property
    def shape(self) -> tuple[float, float]:
        return (self.cpus, self.gpus)


def _number(text: str, line: int, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"trace line {line}: {name}={text!r} is not a number; write a plain number") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"trace line {line}: {name}={text!r}; it must be a finite number >= 0")
    return value


def load_trace(path: Path) -> list[Task]:
    """Read a trace CSV (header exactly ``submit_s,duration_s,cpus,gpus``), sorted by submit time."""
    if not path.is_file():
        raise TraceError(f"--trace {path}: no such file; pass a CSV with header {','.join(TRACE_HEADER)}")
    tasks: list[Task] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != TRACE_HEADER:
            raise TraceError(
                f"trace {path}: header is {header!r}; the first line must be exactly {','.join(TRACE_HEADER)}"
            )
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(TRACE_HEADER):
                raise TraceError(
                    f"trace line {line}: {len(row)} fields; each row needs {len(TRACE_HEADER)}: "
                    f"{','.join(TRACE_HEADER)}"
                )
            submit, duration, cpus, gpus = (_number(c, line, n) for c, n in zip(row, TRACE_HEADER))
            if duration == 0:
                raise TraceError(f"trace line {line}: duration_s=0; a task must run for a positive time")
            if cpus == 0 and gpus == 0:
                raise TraceError(f"trace line {line}: cpus=0 and gpus=0; a task must ask for a CPU or a GPU")
            tasks.append(Task(submit_s=submit, duration_s=duration, cpus=cpus, gpus=gpus))
    if not tasks:
        raise TraceError(f"trace {path}: no tasks after the header; add rows or pass another trace")
    tasks.sort(key=lambda t: t.submit_s)
    return tasks


@dataclass
class SimWorker:
    id: str
    spec: WorkerGroupSpec
    requested_at: float
    ready_at: float  # math.inf while the pod cannot be scheduled (no room in the cluster for it)
    free_cpus: float
    free_gpus: float
    running: int = 0
    idle_since: float | None = None
    removed_at: float | None = None
    scheduled_at: float | None = None  # when a node took the pod: worker time counts from here

    def view(self, now: float) -> Worker:
        pending = self.ready_at > now
        return Worker(
            id=self.id,
            group=self.spec.name,
            busy=self.running > 0,
            started_at=self.requested_at,
            pending=pending,
            idle_since=None if pending or self.running else self.idle_since,
            free_cpus=None if pending else self.free_cpus,
            free_gpus=None if pending else self.free_gpus,
        )


@dataclass(frozen=True)
class View:
    """What an autoscaler sees at one interval."""

    now: float
    groups: Sequence[WorkerGroupSpec]
    workers: Sequence[Worker]
    queue: Sequence[QueueSnapshot]
    demand: Sequence[ResourceDemand]


class Autoscaler(Protocol):
    def step(self, view: View) -> list[Decision]: ...


@dataclass
class PolicyAutoscaler:
    """Our policy, carrying its state through the JSON form as the sensor does."""

    config: PolicyConfig
    state_json: dict[str, Any] = field(default_factory=dict)

    def step(self, view: View) -> list[Decision]:
        reply = decide(
            DecisionRequest(
                now=view.now,
                groups=view.groups,
                workers=view.workers,
                queues=view.queue,
                demand=view.demand,
                config=self.config,
                state=PolicyState.from_json(self.state_json),
            )
        )
        self.state_json = json.loads(json.dumps(reply.state.to_json()))
        return list(reply.decisions)


class FixedPool:
    """Every group at its max from the start; never changes."""

    def step(self, view: View) -> list[Decision]:
        out = []
        for g in view.groups:
            n = sum(1 for w in view.workers if w.group == g.name)
            out.append(Decision(group=g.name, current=n, target=n, remove=(), reason="fixed pool"))
        return out


@dataclass
class IdleTimeout:
    """KubeRay's default autoscaler in outline: launch for pending demand, remove after an idle timeout."""

    idle_timeout_s: float = 60.0

    def step(self, view: View) -> list[Decision]:
        by_group: dict[str, list[ResourceDemand]] = {g.name: [] for g in view.groups}
        for d in view.demand:
            g = group_for(d, view.groups)
            if g is not None:
                by_group[g.name].append(d)
        out = []
        for g in view.groups:
            mine = sorted((w for w in view.workers if w.group == g.name), key=lambda w: w.id)
            current = len(mine)
            starting = sum(1 for w in mine if w.pending)
            launch = max(0, workers_needed(by_group[g.name], g) - starting)
            target = min(max(current + launch, g.min_workers), g.max_workers)
            remove: tuple[str, ...] = ()
            if launch == 0:
                idle = [
                    w
                    for w in mine
                    if not w.busy
                    and not w.pending
                    and w.idle_since is not None
                    and view.now - w.idle_since >= self.idle_timeout_s
                ]
                idle.sort(key=lambda w: (w.idle_since or 0.0, w.id))
                remove = tuple(w.id for w in idle[: max(0, current - g.min_workers)])
                target = current - len(remove)
            out.append(Decision(group=g.name, current=current, target=target, remove=remove, reason="idle"))
        return out


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class RunResult:
    worker_hours: float
    gpu_worker_hours: float
    p50: float
    p95: float
    max: float
    scale_events: int
    makespan_s: float
    peak_workers: int

    def to_json(self) -> dict[str, Any]:
        return {
            "worker_hours": round(self.worker_hours, 3),
            "gpu_worker_hours": round(self.gpu_worker_hours, 3),
            "queue_wait_s": {"p50": round(self.p50, 2), "p95": round(self.p95, 2), "max": round(self.max, 2)},
            "scale_events": self.scale_events,
            "makespan_s": round(self.makespan_s, 1),
            "peak_workers": self.peak_workers,
        }


def check_trace_fits(tasks: Sequence[Task], groups: Sequence[WorkerGroupSpec]) -> None:
    """Every task must fit some group with max_workers > 0, or the replay would wait forever."""
    seen: set[tuple[float, float]] = set()
    for i, t in enumerate(tasks):
        if t.shape in seen:
            continue
        seen.add(t.shape)
        g = group_for(ResourceDemand(cpus=t.cpus, gpus=t.gpus), groups)
        if g is None or g.max_workers == 0:
            kind = "GPU" if t.gpus else "CPU"
            shapes = ", ".join(
                f"{x.name}: {x.cpus_per_worker:g} CPU/{x.gpus_per_worker:g} GPU x{x.max_workers}" for x in groups
            )
            raise TraceError(
                f"trace task {i} (submit_s={t.submit_s:g}) asks for cpus={t.cpus:g}, gpus={t.gpus:g}, which no "
                f"{kind} worker group can run ({shapes}); widen the group flags or fix the trace"
            )


def simulate(
    tasks: Sequence[Task],
    groups: Sequence[WorkerGroupSpec],
    autoscaler: Autoscaler,
    *,
    pod_start_s: float,
    interval_s: float,
    airflow_lead_s: float = 0.0,
    dagrun_schedule: tuple[float, float] | None = None,
    gpu_capacity: int | None = None,
    initial: Callable[[WorkerGroupSpec], int] = lambda g: g.min_workers,
) -> RunResult:
    """Replay ``tasks`` with ``autoscaler`` acting every ``interval_s``; workers start ``pod_start_s`` late.

    Airflow sees each task ``airflow_lead_s`` before Ray does (the task is queued and its driver pod starts
    before it submits Ray work); waits are counted from the Ray submission (``submit_s``).
    ``dagrun_schedule`` (first run, period) is what Airflow's next_dagrun_run_after reports to the policy.
    ``gpu_capacity`` caps the GPU pods the cluster can place at once (a quota, scarce GPU nodes): the rest
    stay Pending, costing nothing, until a placed GPU worker is removed.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s={interval_s}; pass a decision interval > 0 seconds")
    if airflow_lead_s < 0:
        raise ValueError(f"airflow_lead_s={airflow_lead_s}; pass a lead >= 0 seconds")
    if pod_start_s < 0:
        raise ValueError(f"pod_start_s={pod_start_s}; pass a pod start delay >= 0 seconds")
    if gpu_capacity is not None and gpu_capacity < 1:
        raise ValueError(f"gpu_capacity={gpu_capacity}; pass at least 1, or None for no limit")
    check_trace_fits(tasks, groups)
    workers: list[SimWorker] = []  # every worker ever requested, for the accounting
    live: list[SimWorker] = []  # not removed yet
    by_id: dict[str, SimWorker] = {}
    serial = 0

    def add_worker(spec: WorkerGroupSpec, now: float, ready_at: float) -> None:
        nonlocal serial
        serial += 1
        w = SimWorker(
            id=f"{spec.name}-{serial:06d}",
            spec=spec,
            requested_at=now,
            ready_at=math.inf,
            free_cpus=spec.cpus_per_worker,
            free_gpus=spec.gpus_per_worker,
        )
        workers.append(w)
        live.append(w)
        by_id[w.id] = w
        schedule(now, ready_at - now)

    def schedule(now: float, start_s: float) -> None:
        """Place Pending pods in request order while the cluster has room for them."""
        placed_gpu = sum(1 for w in live if w.spec.is_gpu and w.scheduled_at is not None)
        for w in live:
            if w.scheduled_at is not None:
                continue
            if w.spec.is_gpu and gpu_capacity is not None:
                if placed_gpu >= gpu_capacity:
                    continue
                placed_gpu += 1
            w.scheduled_at = now
            w.ready_at = now + start_s
            w.idle_since = w.ready_at

    for spec in groups:
        for _ in range(initial(spec)):
            add_worker(spec, 0.0, 0.0)

    # Per-shape FIFO queues; a task's index in `tasks` is its place in the global FIFO order.
    queues: dict[tuple[float, float], deque[int]] = {}
    queued = 0
    running = 0
    running_by_shape: dict[tuple[float, float], int] = {}
    waits: list[float] = []
    completions: list[tuple[float, int, str]] = []  # (end time, task index, worker id)
    next_arrival = 0
    scale_events = 0
    peak = len(workers)
    last_progress = 0.0

    def place(now: float) -> None:
        nonlocal queued, running
        while queued:
            best: tuple[int, SimWorker] | None = None
            for shape, q in queues.items():
                if not q or (best is not None and q[0] > best[0]):
                    continue
                cpus, gpus = shape
                fitting = [
                    w
                    for w in live
                    if w.ready_at <= now
                    and (w.spec.gpus_per_worker > 0) == (gpus > 0)
                    and w.free_cpus >= cpus - 1e-9
                    and w.free_gpus >= gpus - 1e-9
                ]
                if fitting:
                    w = min(fitting, key=lambda w: (w.free_gpus - gpus, w.free_cpus - cpus, w.id))
                    best = (q[0], w)
            if best is None:
                return
            i, w = best
            t = tasks[i]
            queues[t.shape].popleft()
            queued -= 1
            running += 1
            w.free_cpus -= t.cpus
            w.free_gpus -= t.gpus
            w.running += 1
            running_by_shape[t.shape] = running_by_shape.get(t.shape, 0) + 1
            w.idle_since = None
            waits.append(now - t.submit_s)
            heapq.heappush(completions, (now + t.duration_s, i, w.id))

    tick = 0.0
    n = len(tasks)
    visible = 0  # tasks[:visible] are known to Airflow
    now = 0.0
    while next_arrival < n or queued or running:
        candidates = [tick]
        if next_arrival < n:
            candidates.append(tasks[next_arrival].submit_s)
        if completions:
            candidates.append(completions[0][0])
        pending_ready = [w.ready_at for w in live if now < w.ready_at < math.inf]
        if pending_ready:
            candidates.append(min(pending_ready))
        now = min(candidates)
        while completions and completions[0][0] <= now:
            _, i, wid = heapq.heappop(completions)
            w = by_id[wid]
            t = tasks[i]
            w.free_cpus += t.cpus
            w.free_gpus += t.gpus
            w.running -= 1
            running_by_shape[t.shape] -= 1
            running -= 1
            if w.running == 0:
                w.idle_since = now
            last_progress = now
        while next_arrival < n and tasks[next_arrival].submit_s <= now:
            t = tasks[next_arrival]
            queues.setdefault(t.shape, deque()).append(next_arrival)
            queued += 1
            next_arrival += 1
        before = len(waits)
        place(now)
        if len(waits) != before:
            last_progress = now
        if now >= tick:
            if now - last_progress > STALL_S and queued:
                raise SimulationError(f"no task started or finished for {STALL_S:g} s with {queued} queued")
            while visible < n and tasks[visible].submit_s - airflow_lead_s <= now:
                visible += 1
            ahead: dict[tuple[float, float], int] = {}
            for i in range(next_arrival, visible):
                ahead[tasks[i].shape] = ahead.get(tasks[i].shape, 0) + 1
            next_run = None
            if dagrun_schedule is not None:
                first, period = dagrun_schedule
                next_run = first if now < first else first + (math.floor((now - first) / period) + 1) * period
            view = _view(now, groups, live, queues, ahead, running_by_shape, next_run)
            for d in autoscaler.step(view):
                scale_events += _apply(d, now, pod_start_s, live, by_id, add_worker, groups)
            live[:] = [w for w in live if w.removed_at is None]
            schedule(now, pod_start_s)
            peak = max(peak, len(live))
            place(now)
            tick = now + interval_s
    end = now
    worker_s = 0.0
    gpu_worker_s = 0.0
    for w in workers:
        if w.scheduled_at is None:
            continue
        alive = (w.removed_at if w.removed_at is not None else end) - w.scheduled_at
        worker_s += alive
        if w.spec.is_gpu:
            gpu_worker_s += alive
    waits.sort()
    return RunResult(
        worker_hours=worker_s / 3600,
        gpu_worker_hours=gpu_worker_s / 3600,
        p50=_percentile(waits, 0.5),
        p95=_percentile(waits, 0.95),
        max=waits[-1] if waits else 0.0,
        scale_events=scale_events,
        makespan_s=end,
        peak_workers=peak,
    )


def _view(
    now: float,
    groups: Sequence[WorkerGroupSpec],
    workers: Sequence[SimWorker],
    queues: dict[tuple[float, float], deque[int]],
    ahead: dict[tuple[float, float], int],
    running: dict[tuple[float, float], int],
    next_run: float | None = None,
) -> View:
    """Ray's pending demand by shape, and one Airflow snapshot per task shape (as if one pool per shape).

    Airflow counts a task as queued while its driver starts (``ahead``) and as running from then on, whether
    Ray has placed its work yet or not.
    """
    demand = [ResourceDemand(cpus=cpus, gpus=gpus, count=len(q)) for (cpus, gpus), q in sorted(queues.items()) if q]
    snapshots = []
    for shape in sorted(set(ahead) | {k for k, q in queues.items() if q} | {k for k, v in running.items() if v}):
        cpus, gpus = shape
        snapshots.append(
            QueueSnapshot(
                queued=ahead.get(shape, 0),
                running=len(queues.get(shape, ())) + running.get(shape, 0),
                task_shape=ResourceDemand(cpus=cpus, gpus=gpus),
                next_dagrun_run_after=next_run,
            )
        )
    if not snapshots:
        snapshots.append(QueueSnapshot(next_dagrun_run_after=next_run))
    return View(
        now=now,
        groups=groups,
        workers=[w.view(now) for w in workers],
        queue=snapshots,
        demand=demand,
    )


def _apply(
    d: Decision,
    now: float,
    pod_start_s: float,
    workers: Sequence[SimWorker],
    by_id: dict[str, SimWorker],
    add_worker: Callable[[WorkerGroupSpec, float, float], None],
    groups: Sequence[WorkerGroupSpec],
) -> int:
    """Apply one decision as an actuator would; 1 if the group changed size."""
    spec = next(g for g in groups if g.name == d.group)
    alive = [w for w in workers if w.removed_at is None and w.spec.name == d.group]
    if d.current != len(alive):
        raise SimulationError(f"{d.group}: decision says current={d.current}, the group has {len(alive)}")
    if d.target > d.current:
        if d.remove:
            raise SimulationError(f"{d.group}: scale up to {d.target} also removes {d.remove}")
        for _ in range(d.target - d.current):
            add_worker(spec, now, now + pod_start_s)
        return 1
    if len(d.remove) != d.current - d.target:
        raise SimulationError(f"{d.group}: {d.current} -> {d.target} but removes {len(d.remove)} worker(s)")
    for wid in d.remove:
        w = by_id.get(wid)
        if w is None or w.removed_at is not None or w.spec.name != d.group:
            raise SimulationError(f"{d.group}: removes {wid}, which is not a live worker of the group")
        if w.running:
            raise SimulationError(f"{d.group}: removes busy worker {wid} ({w.running} task(s) running)")
        w.removed_at = now
    return 1 if d.remove else 0


FIELDS_HELP = """\
Output: one JSON object.
  trace, tasks, pod_start_s, interval_s, airflow_lead_s, window_s, backlog_grace_workers,
  prewarm_s, prewarm_workers, pending_timeout_s, gpu_capacity, idle_timeout_s   the inputs
  groups                                  the worker groups: name, min, max, cpus, gpus per worker
  policies.<name>                         for each of: policy (ours), fixed_pool, idle_timeout
    worker_hours       sum over workers of (removed or end of run - placed on a node) / 3600; includes
                       the pod start, not time Pending for want of room (--gpu-capacity)
    gpu_worker_hours   the same for workers of GPU groups only
    queue_wait_s.p50   median of (task start - task submit), seconds
    queue_wait_s.p95   95th percentile of the same (linear interpolation)
    queue_wait_s.max   the longest wait
    scale_events       decisions (interval x group) that changed a group's size
    makespan_s         when the last task finished (the end of the run)
    peak_workers       most workers alive at once (pending included)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlk8s.scaling.simulate",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=FIELDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--trace", type=Path, required=True, help="CSV with header submit_s,duration_s,cpus,gpus")
    p.add_argument("--pod-start-s", type=float, default=60.0, help="seconds from requesting a worker to using it")
    p.add_argument("--interval-s", type=float, default=10.0, help="seconds between autoscaler decisions")
    p.add_argument("--cpu-min", type=int, default=0, help="CPU group min_workers")
    p.add_argument("--cpu-max", type=int, default=20, help="CPU group max_workers")
    p.add_argument("--cpu-worker-cpus", type=float, default=4.0, help="CPUs of one CPU worker")
    p.add_argument("--gpu-min", type=int, default=0, help="GPU group min_workers")
    p.add_argument("--gpu-max", type=int, default=4, help="GPU group max_workers (0: no GPU group)")
    p.add_argument("--gpu-worker-cpus", type=float, default=4.0, help="CPUs of one GPU worker")
    p.add_argument("--gpu-worker-gpus", type=float, default=1.0, help="GPUs of one GPU worker")
    p.add_argument(
        "--window-s", type=float, default=PolicyConfig.scale_down_window_s, help="our policy's scale_down_window_s"
    )
    p.add_argument(
        "--airflow-lead-s",
        type=float,
        default=30.0,
        help="seconds a task sits in Airflow's queue (seen by our policy only) before Ray sees its work",
    )
    p.add_argument(
        "--backlog-grace-workers",
        type=int,
        default=PolicyConfig.backlog_grace_workers,
        help="our policy's backlog_grace_workers",
    )
    p.add_argument(
        "--dagrun-period-s",
        type=float,
        default=None,
        help="the DAG behind the trace runs every this many seconds (gives the policy next_dagrun_run_after)",
    )
    p.add_argument("--dagrun-first-s", type=float, default=0.0, help="time of its first run (with --dagrun-period-s)")
    p.add_argument("--prewarm-s", type=float, default=0.0, help="our policy pre-warms this long before each run")
    p.add_argument("--prewarm-workers", type=int, default=0, help="CPU workers to have ready for each run")
    p.add_argument(
        "--pending-timeout-s",
        type=float,
        default=PolicyConfig.pending_timeout_s,
        help="our policy's pending_timeout_s: a group with a pod Pending this long stops growing",
    )
    p.add_argument(
        "--gpu-capacity",
        type=int,
        default=None,
        help="at most this many GPU pods fit the cluster at once; the rest stay Pending (default: no limit)",
    )
    p.add_argument("--idle-timeout-s", type=float, default=60.0, help="idle_timeout baseline: idleTimeoutSeconds")
    return p


def groups_from_args(args: argparse.Namespace) -> list[WorkerGroupSpec]:
    groups = [WorkerGroupSpec("cpu", args.cpu_min, args.cpu_max, args.cpu_worker_cpus)]
    if args.gpu_max > 0:
        groups.append(WorkerGroupSpec("gpu", args.gpu_min, args.gpu_max, args.gpu_worker_cpus, args.gpu_worker_gpus))
    return groups


def config_from_args(args: argparse.Namespace) -> PolicyConfig:
    prewarm: tuple[ResourceDemand, ...] = ()
    if args.prewarm_workers > 0:
        prewarm = (ResourceDemand(cpus=args.cpu_worker_cpus, count=args.prewarm_workers),)
    return PolicyConfig(
        scale_down_window_s=args.window_s,
        backlog_grace_workers=args.backlog_grace_workers,
        prewarm_s=args.prewarm_s,
        prewarm_demand=prewarm,
        pending_timeout_s=args.pending_timeout_s,
    )


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three policies on ``args.trace``; the JSON object that ``main`` prints (see FIELDS_HELP)."""
    for name in ("pod_start_s", "window_s", "idle_timeout_s", "airflow_lead_s", "prewarm_s", "pending_timeout_s"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--{name.replace('_', '-')}={value}: pass seconds >= 0")
    if args.interval_s <= 0 or not math.isfinite(args.interval_s):
        raise ValueError(f"--interval-s={args.interval_s}: pass seconds > 0")
    if args.dagrun_period_s is not None and args.dagrun_period_s <= 0:
        raise ValueError(f"--dagrun-period-s={args.dagrun_period_s}: pass seconds > 0, or leave it out")
    if args.prewarm_workers < 0:
        raise ValueError(f"--prewarm-workers={args.prewarm_workers}: pass a count >= 0")
    groups = groups_from_args(args)
    config = config_from_args(args)
    tasks = load_trace(args.trace)
    check_trace_fits(tasks, groups)
    schedule = None
    if args.dagrun_period_s is not None:
        schedule = (args.dagrun_first_s, args.dagrun_period_s)
    runs: dict[str, tuple[Autoscaler, Callable[[WorkerGroupSpec], int]]] = {
        "policy": (PolicyAutoscaler(config), lambda g: g.min_workers),
        "fixed_pool": (FixedPool(), lambda g: g.max_workers),
        "idle_timeout": (IdleTimeout(args.idle_timeout_s), lambda g: g.min_workers),
    }
    out: dict[str, Any] = {
        "trace": str(args.trace),
        "tasks": len(tasks),
        "pod_start_s": args.pod_start_s,
        "interval_s": args.interval_s,
        "airflow_lead_s": args.airflow_lead_s,
        "window_s": args.window_s,
        "backlog_grace_workers": args.backlog_grace_workers,
        "prewarm_s": args.prewarm_s,
        "prewarm_workers": args.prewarm_workers,
        "pending_timeout_s": args.pending_timeout_s,
        "gpu_capacity": args.gpu_capacity,
        "idle_timeout_s": args.idle_timeout_s,
        "groups": [
            {
                "name": g.name,
                "min": g.min_workers,
                "max": g.max_workers,
                "cpus": g.cpus_per_worker,
                "gpus": g.gpus_per_worker,
            }
            for g in groups
        ],
        "policies": {},
    }
    for name, (autoscaler, initial) in runs.items():
        result = simulate(
            tasks,
            groups,
            autoscaler,
            pod_start_s=args.pod_start_s,
            interval_s=args.interval_s,
            airflow_lead_s=args.airflow_lead_s,
            dagrun_schedule=schedule,
            gpu_capacity=args.gpu_capacity,
            initial=initial,
        )
        out["policies"][name] = result.to_json()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = report(args)
    except ValueError as e:  # TraceError and PolicyInputError included: bad input, named, before any work
        parser.error(str(e))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
