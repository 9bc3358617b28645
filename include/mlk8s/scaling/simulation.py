"""A discrete-event replay of a task trace against one autoscaler: queue waits and worker-hours.

Tasks join a FIFO queue when submitted and start as soon as a usable worker has the CPUs/GPUs they ask for
(in submission order, with later tasks of another shape allowed to start when the head of the queue does not
fit, as Ray does); a requested worker becomes usable ``pod_start_s`` later and costs worker-time from the
moment a node takes it (the node is billed while the pod starts). CPU-only tasks run only on CPU workers,
GPU tasks only on GPU workers. Among workers with room, a task goes to the fullest one, so lightly used
workers drain and can be removed; the same placement serves every autoscaler. The autoscaler acts every
``interval_s`` seconds on what a sensor would see at that moment (:class:`~mlk8s.scaling.autoscalers.View`).

The clock jumps from event to event (a task submitted to Ray or seen by Airflow, a task ending, a pod becoming
ready, a DAG run time passing) and to the decision ticks, which fall on a grid of ``interval_s`` from the
start of the run. After a decision that changed nothing, the ticks before the next event, or before the
time the autoscaler says it could decide otherwise (its ``recheck_at``), are skipped: they would see the
same view and hold again. So a run costs steps per task and per decision that can change something, not per
simulated second: an epoch-stamped trace or a week of quiet replays as fast as a busy hour.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlk8s.scaling.autoscalers import Autoscaler, View
from mlk8s.scaling.model import QueueSnapshot, ResourceDemand, Worker, WorkerGroupSpec
from mlk8s.scaling.policy import Decision
from mlk8s.scaling.results import RunResult, percentile
from mlk8s.scaling.trace import Task, check_trace_fits

#: Decisions in a row that change the pool while nothing else happens: an autoscaler that flaps without end.
MAX_CHANGES_WITHOUT_EVENT = 1000

Shape = tuple[float, float]


class SimulationError(RuntimeError):
    """An autoscaler broke a rule the simulator enforces (removed a busy worker, inconsistent decision, stall,
    flapping)."""


@dataclass
class SimWorker:
    """One worker pod of the replay, from its request to its removal."""

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


def _min_workers(g: WorkerGroupSpec) -> int:
    return g.min_workers


class Simulation:
    """One replay: the trace, the cluster's workers and queues, and the clock, advanced event by event.

    Airflow sees each task ``airflow_lead_s`` before Ray does (the task is queued and its driver pod starts
    before it submits Ray work); waits are counted from the Ray submission (``submit_s``).
    ``dagrun_schedule`` (first run, period) is what Airflow's next_dagrun_run_after reports to the policy.
    ``gpu_capacity`` caps the GPU pods the cluster can place at once (a quota, scarce GPU nodes): the rest
    stay Pending, costing nothing, until a placed GPU worker is removed. ``initial`` gives each group's size
    at the start (workers ready at once). The run starts when Airflow sees the first task (its submission
    less ``airflow_lead_s``), whatever the trace's clock (seconds from 0, or Unix time).
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        groups: Sequence[WorkerGroupSpec],
        autoscaler: Autoscaler,
        *,
        pod_start_s: float,
        interval_s: float,
        airflow_lead_s: float = 0.0,
        dagrun_schedule: tuple[float, float] | None = None,
        gpu_capacity: int | None = None,
        initial: Callable[[WorkerGroupSpec], int] = _min_workers,
    ) -> None:
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(f"interval_s={interval_s}; pass a decision interval > 0 seconds")
        if not (airflow_lead_s >= 0 and math.isfinite(airflow_lead_s)):
            raise ValueError(f"airflow_lead_s={airflow_lead_s}; pass a lead >= 0 seconds")
        if not (pod_start_s >= 0 and math.isfinite(pod_start_s)):
            raise ValueError(f"pod_start_s={pod_start_s}; pass a pod start delay >= 0 seconds")
        if gpu_capacity is not None and gpu_capacity < 1:
            raise ValueError(f"gpu_capacity={gpu_capacity}; pass at least 1, or None for no limit")
        check_trace_fits(tasks, groups)
        self.tasks = tasks
        self.groups = groups
        self.autoscaler = autoscaler
        self.pod_start_s = pod_start_s
        self.interval_s = interval_s
        self.airflow_lead_s = airflow_lead_s
        self.dagrun_schedule = dagrun_schedule
        self.gpu_capacity = gpu_capacity
        self.workers: list[SimWorker] = []  # every worker ever requested, for the accounting
        self.live: list[SimWorker] = []  # not removed yet
        self.by_id: dict[str, SimWorker] = {}
        self.serial = 0
        # Per-shape FIFO queues; a task's index in `tasks` is its place in the global FIFO order.
        self.queues: dict[Shape, deque[int]] = {}
        self.queued = 0
        self.running = 0
        self.running_by_shape: dict[Shape, int] = {}
        self.waits: list[float] = []
        self.completions: list[tuple[float, int, str]] = []  # (end time, task index, worker id)
        self.next_arrival = 0  # tasks[:next_arrival] have been submitted to Ray
        self.visible = 0  # tasks[:visible] are known to Airflow
        self.scale_events = 0
        self.start = tasks[0].submit_s - airflow_lead_s if tasks else 0.0
        self.now = self.start
        self.tick_index = 0  # decision ticks fall at start + k * interval_s
        self.tick: float | None = self.start  # the next decision; None: none until an event
        self.changes_without_event = 0
        for spec in groups:
            for _ in range(initial(spec)):
                self._add_worker(spec, self.start, self.start)
        self.peak = len(self.workers)

    # --- workers ---------------------------------------------------------------------------------------

    def _add_worker(self, spec: WorkerGroupSpec, now: float, ready_at: float) -> None:
        self.serial += 1
        w = SimWorker(
            id=f"{spec.name}-{self.serial:06d}",
            spec=spec,
            requested_at=now,
            ready_at=math.inf,
            free_cpus=spec.cpus_per_worker,
            free_gpus=spec.gpus_per_worker,
        )
        self.workers.append(w)
        self.live.append(w)
        self.by_id[w.id] = w
        self._schedule_pending(now, ready_at - now)

    def _schedule_pending(self, now: float, start_s: float) -> None:
        """Place Pending pods in request order while the cluster has room for them."""
        placed_gpu = sum(1 for w in self.live if w.spec.is_gpu and w.scheduled_at is not None)
        for w in self.live:
            if w.scheduled_at is not None:
                continue
            if w.spec.is_gpu and self.gpu_capacity is not None:
                if placed_gpu >= self.gpu_capacity:
                    continue
                placed_gpu += 1
            w.scheduled_at = now
            w.ready_at = now + start_s
            w.idle_since = w.ready_at

    # --- tasks -----------------------------------------------------------------------------------------

    def _best_start(self, now: float) -> tuple[int, SimWorker] | None:
        """The earliest-submitted queued task that fits a ready worker now, and the fullest such worker."""
        best: tuple[int, SimWorker] | None = None
        for shape, q in self.queues.items():
            if not q or (best is not None and q[0] > best[0]):
                continue
            cpus, gpus = shape
            fitting = [
                w
                for w in self.live
                if w.ready_at <= now
                and (w.spec.gpus_per_worker > 0) == (gpus > 0)
                and w.free_cpus >= cpus - 1e-9
                and w.free_gpus >= gpus - 1e-9
            ]
            if fitting:
                w = min(fitting, key=lambda w: (w.free_gpus - gpus, w.free_cpus - cpus, w.id))
                best = (q[0], w)
        return best

    def _place(self, now: float) -> None:
        while self.queued:
            best = self._best_start(now)
            if best is None:
                return
            i, w = best
            t = self.tasks[i]
            self.queues[t.shape].popleft()
            self.queued -= 1
            self.running += 1
            w.free_cpus -= t.cpus
            w.free_gpus -= t.gpus
            w.running += 1
            self.running_by_shape[t.shape] = self.running_by_shape.get(t.shape, 0) + 1
            w.idle_since = None
            self.waits.append(now - t.submit_s)
            heapq.heappush(self.completions, (now + t.duration_s, i, w.id))

    def _finish_due(self, now: float) -> None:
        while self.completions and self.completions[0][0] <= now:
            _, i, wid = heapq.heappop(self.completions)
            w = self.by_id[wid]
            t = self.tasks[i]
            w.free_cpus += t.cpus
            w.free_gpus += t.gpus
            w.running -= 1
            self.running_by_shape[t.shape] -= 1
            self.running -= 1
            if w.running == 0:
                w.idle_since = now

    def _arrive_due(self, now: float) -> None:
        while self.next_arrival < len(self.tasks) and self.tasks[self.next_arrival].submit_s <= now:
            t = self.tasks[self.next_arrival]
            self.queues.setdefault(t.shape, deque()).append(self.next_arrival)
            self.queued += 1
            self.next_arrival += 1

    # --- the autoscaler --------------------------------------------------------------------------------

    def _next_run(self, now: float) -> float | None:
        if self.dagrun_schedule is None:
            return None
        first, period = self.dagrun_schedule
        return first if now < first else first + (math.floor((now - first) / period) + 1) * period

    def _view(self, now: float) -> View:
        """Ray's pending demand by shape, and one Airflow snapshot per task shape (as if one pool per shape).

        Airflow counts a task as queued while its driver starts (Airflow sees it, Ray does not yet) and as
        running from then on, whether Ray has placed its work yet or not.
        """
        while self.visible < len(self.tasks) and self.tasks[self.visible].submit_s - self.airflow_lead_s <= now:
            self.visible += 1
        ahead: dict[Shape, int] = {}
        for i in range(self.next_arrival, self.visible):
            ahead[self.tasks[i].shape] = ahead.get(self.tasks[i].shape, 0) + 1
        next_run = self._next_run(now)
        queues, running = self.queues, self.running_by_shape
        demand = [ResourceDemand(cpus=c, gpus=g, count=len(q)) for (c, g), q in sorted(queues.items()) if q]
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
            now=now, groups=self.groups, workers=[w.view(now) for w in self.live], queue=snapshots, demand=demand
        )

    def _apply(self, d: Decision, now: float) -> int:
        """Apply one decision as an actuator would; 1 if the group changed size."""
        spec = next(g for g in self.groups if g.name == d.group)
        alive = [w for w in self.live if w.removed_at is None and w.spec.name == d.group]
        if d.current != len(alive):
            raise SimulationError(f"{d.group}: decision says current={d.current}, the group has {len(alive)}")
        if d.target > d.current:
            if d.remove:
                raise SimulationError(f"{d.group}: scale up to {d.target} also removes {d.remove}")
            for _ in range(d.target - d.current):
                self._add_worker(spec, now, now + self.pod_start_s)
            return 1
        if len(d.remove) != d.current - d.target:
            raise SimulationError(f"{d.group}: {d.current} -> {d.target} but removes {len(d.remove)} worker(s)")
        for wid in d.remove:
            w = self.by_id.get(wid)
            if w is None or w.removed_at is not None or w.spec.name != d.group:
                raise SimulationError(f"{d.group}: removes {wid}, which is not a live worker of the group")
            if w.running:
                raise SimulationError(f"{d.group}: removes busy worker {wid} ({w.running} task(s) running)")
            w.removed_at = now
        return 1 if d.remove else 0

    def _decide(self, now: float) -> None:
        view = self._view(now)
        changed = 0
        for d in self.autoscaler.step(view):
            changed += self._apply(d, now)
        self.scale_events += changed
        self.live[:] = [w for w in self.live if w.removed_at is None]
        self._schedule_pending(now, self.pod_start_s)
        self.peak = max(self.peak, len(self.live))
        self._place(now)
        if changed:
            self.changes_without_event += 1
            if self.changes_without_event > MAX_CHANGES_WITHOUT_EVENT:
                raise SimulationError(
                    f"the autoscaler changed the pool at {MAX_CHANGES_WITHOUT_EVENT} decisions in a row "
                    "while no task arrived or ended and no pod became ready: it flaps"
                )
            self.tick = self._tick_at_or_after(math.nextafter(now, math.inf))
            return
        # A hold: the same view holds again until an event changes it or the autoscaler's own clock runs out.
        wake = [t for t in (self._next_event(), self.autoscaler.recheck_at(view)) if t is not None]
        self.tick = self._tick_at_or_after(min(wake)) if wake else None

    # --- the clock -------------------------------------------------------------------------------------

    def _tick_at_or_after(self, t: float) -> float:
        """The first decision tick of the grid at or after ``t`` (and after the last one)."""
        k = max(self.tick_index + 1, math.ceil((t - self.start) / self.interval_s))
        while k > self.tick_index + 1 and self.start + (k - 1) * self.interval_s >= t:
            k -= 1
        while self.start + k * self.interval_s < t:
            k += 1
        self.tick_index = k
        return self.start + k * self.interval_s

    def _next_event(self) -> float | None:
        """The next time the world changes on its own: a task is submitted to Ray or seen by Airflow, a task
        ends, a pod becomes ready, or a DAG run time passes (Airflow's next_dagrun_run_after moves on)."""
        if self.completions and self.completions[0][0] <= self.now:
            return self.now  # a task placed just now is so short that it ends now
        times = []
        if self.next_arrival < len(self.tasks):
            times.append(self.tasks[self.next_arrival].submit_s)
        if self.visible < len(self.tasks):
            times.append(self.tasks[self.visible].submit_s - self.airflow_lead_s)
        if self.completions:
            times.append(self.completions[0][0])
        times += [w.ready_at for w in self.live if self.now < w.ready_at < math.inf]
        if (next_run := self._next_run(self.now)) is not None:
            times.append(next_run)
        later = [t for t in times if t > self.now]
        return min(later, default=None)

    def run(self) -> RunResult:
        """Replay the whole trace; the figures of the run."""
        while self.next_arrival < len(self.tasks) or self.queued or self.running:
            event = self._next_event()
            if event is None and self.tick is None:
                raise SimulationError(
                    f"{self.queued} task(s) queued can never start: no task runs, no pod is starting, and the "
                    "autoscaler holds the pool as it is"
                )
            now = self.now = min(t for t in (event, self.tick) if t is not None)
            if now == event:
                self.changes_without_event = 0
            self._finish_due(now)
            self._arrive_due(now)
            self._place(now)
            if self.tick is None:  # the event changed the view: decide at the next tick
                self.tick = self._tick_at_or_after(now)
            if now >= self.tick:
                self._decide(now)
        return self._result()

    def _result(self) -> RunResult:
        end = self.now
        worker_s = 0.0
        gpu_worker_s = 0.0
        for w in self.workers:
            if w.scheduled_at is None:
                continue
            alive = (w.removed_at if w.removed_at is not None else end) - w.scheduled_at
            worker_s += alive
            if w.spec.is_gpu:
                gpu_worker_s += alive
        waits = sorted(self.waits)
        return RunResult(
            worker_hours=worker_s / 3600,
            gpu_worker_hours=gpu_worker_s / 3600,
            p50=percentile(waits, 0.5),
            p95=percentile(waits, 0.95),
            max=waits[-1] if waits else 0.0,
            scale_events=self.scale_events,
            makespan_s=end - self.start,
            peak_workers=self.peak,
        )
