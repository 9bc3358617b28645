"""The scaling policy's inputs: worker groups, workers, Airflow's queue, Ray's demand, and the tuning.

Each model checks itself when built, so bad input fails with a message naming the field and the fix before
any decision is made. Times are seconds on one clock chosen by the caller (epoch seconds in the sensor,
trace seconds in the simulator). Memory is in bytes; 0 means "not constrained".
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class PolicyInputError(ValueError):
    """Bad input to the policy; the message names the field and how to fix it."""


def require(ok: bool, message: str) -> None:
    """Raise :class:`PolicyInputError` with ``message`` (which names the field and the fix) unless ``ok``."""
    if not ok:
        raise PolicyInputError(message)


def is_finite(value: object) -> bool:
    """A real number (not a bool, not NaN or infinite)."""
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
        require(
            isinstance(self.name, str) and bool(self.name),
            "WorkerGroupSpec.name is empty; give the group the name of its KubeRay workerGroupSpec",
        )
        where = f"WorkerGroupSpec {self.name!r}"
        require(
            isinstance(self.min_workers, int) and self.min_workers >= 0,
            f"{where}: min_workers={self.min_workers!r}; set min_workers to an integer >= 0",
        )
        require(
            isinstance(self.max_workers, int) and self.max_workers >= self.min_workers,
            f"{where}: max_workers={self.max_workers!r} < min_workers={self.min_workers!r}; "
            "set max_workers >= min_workers",
        )
        require(
            is_finite(self.cpus_per_worker) and self.cpus_per_worker > 0,
            f"{where}: cpus_per_worker={self.cpus_per_worker!r}; set it to the CPUs of one worker (> 0)",
        )
        require(
            is_finite(self.gpus_per_worker) and self.gpus_per_worker >= 0,
            f"{where}: gpus_per_worker={self.gpus_per_worker!r}; set it to 0 or the GPUs of one worker",
        )
        require(
            is_finite(self.memory_per_worker) and self.memory_per_worker >= 0,
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
        require(isinstance(self.id, str) and bool(self.id), "Worker.id is empty; pass the pod name")
        require(
            is_finite(self.started_at),
            f"Worker {self.id!r}: started_at={self.started_at!r}; pass the pod's creation time in seconds",
        )
        require(
            not (self.busy and self.pending),
            f"Worker {self.id!r}: busy and pending at once; a pending pod runs no work, set busy=False",
        )
        require(
            self.idle_since is None or is_finite(self.idle_since),
            f"Worker {self.id!r}: idle_since={self.idle_since!r}; pass seconds or None",
        )
        for name in ("free_cpus", "free_gpus", "free_memory"):
            value = getattr(self, name)
            require(
                value is None or (is_finite(value) and value >= 0),
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
            require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                f"QueueSnapshot.{name}={value!r}; pass the count of task instances in that state (int >= 0)",
            )
        require(
            self.next_dagrun_run_after is None or is_finite(self.next_dagrun_run_after),
            f"QueueSnapshot.next_dagrun_run_after={self.next_dagrun_run_after!r}; pass seconds or None",
        )
        require(
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
            require(
                is_finite(value) and value >= 0,
                f"ResourceDemand.{name}={value!r}; pass a resource amount >= 0",
            )
        require(
            isinstance(self.count, int) and not isinstance(self.count, bool) and self.count >= 0,
            f"ResourceDemand.count={self.count!r}; pass the number of requests of this shape (int >= 0)",
        )
        require(
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
      growing, at most one per busy worker. The backlog is a forecast (Ray has not seen the work yet) and
      running tasks free room while new pods start, so a backlog smaller than this is cheaper to queue
      briefly than to start workers for; with nothing running nothing frees room, so there is no grace.
      Ray's own pending demand always counts in full, and so does the whole backlog when deciding whether
      an idle worker may go.
    - ``cpus_per_task``/``gpus_per_task``/``memory_per_task``: the shape of one Airflow task on the pool
      (unless its :class:`QueueSnapshot` names one), used to turn task counts into demand.
    - ``prewarm_s`` and ``prewarm_demand``: within ``prewarm_s`` before ``next_dagrun_run_after`` the pool is
      sized for ``prewarm_demand`` (0 or empty: no pre-warming).
    - ``pending_timeout_s``: a group with a pod Pending longer than this stops growing (the cluster has no
      room for it; asking for more pods only adds more Pending pods).
    - ``warm_pool`` and ``cold_start_cost_s``: the adaptive warm pool (:mod:`mlk8s.scaling.warm_pool`). Once a
      level of a group (its k-th worker) has a few observed idle gaps, its idle worker is kept for the
      keep-alive that would have cost least over them, counting ``cold_start_cost_s`` idle-worker-seconds per
      cold start (the pod start billed again plus the next task's wait for it): longer than the window where
      work comes back soon, shorter where it does not. Off, the window alone decides. The default, about one
      pod start as for the window, keeps worker-hours below a 60 s idle timeout's on every benchmark trace
      (benchmarks/scaling_simulate.py); raise it where a task's wait is worth more than worker time.
    """

    scale_down_window_s: float = 60.0
    backlog_grace_workers: int = 2
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    memory_per_task: float = 0.0
    prewarm_s: float = 0.0
    prewarm_demand: tuple[ResourceDemand, ...] = ()
    pending_timeout_s: float = 600.0
    warm_pool: bool = True
    cold_start_cost_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("scale_down_window_s", "prewarm_s", "pending_timeout_s", "cold_start_cost_s"):
            value = getattr(self, name)
            require(
                is_finite(value) and value >= 0,
                f"PolicyConfig.{name}={value!r}; pass a duration in seconds >= 0",
            )
        require(
            isinstance(self.warm_pool, bool),
            f"PolicyConfig.warm_pool={self.warm_pool!r}; pass true or false",
        )
        require(
            isinstance(self.backlog_grace_workers, int) and self.backlog_grace_workers >= 0,
            f"PolicyConfig.backlog_grace_workers={self.backlog_grace_workers!r}; pass an integer >= 0",
        )
        require(
            is_finite(self.cpus_per_task) and self.cpus_per_task >= 0,
            f"PolicyConfig.cpus_per_task={self.cpus_per_task!r}; pass the CPUs one Airflow task uses (>= 0)",
        )
        require(
            is_finite(self.gpus_per_task) and self.gpus_per_task >= 0,
            f"PolicyConfig.gpus_per_task={self.gpus_per_task!r}; pass the GPUs one Airflow task uses (>= 0)",
        )
        require(
            is_finite(self.memory_per_task) and self.memory_per_task >= 0,
            f"PolicyConfig.memory_per_task={self.memory_per_task!r}; pass bytes (>= 0)",
        )
        require(
            all(isinstance(d, ResourceDemand) for d in self.prewarm_demand),
            "PolicyConfig.prewarm_demand must be a tuple of ResourceDemand",
        )

    @property
    def task_demand(self) -> ResourceDemand | None:
        """The shape of one Airflow task, or None when Airflow counts are not used (all zero)."""
        if self.cpus_per_task == 0 and self.gpus_per_task == 0 and self.memory_per_task == 0:
            return None
        return ResourceDemand(cpus=self.cpus_per_task, gpus=self.gpus_per_task, memory=self.memory_per_task)
