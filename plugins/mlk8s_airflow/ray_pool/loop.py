"""The one Ray pool loop: read Airflow's queue and Ray's demand, decide with the pure policy, act, wait.

:meth:`RayPoolLoop.run` is the loop everybody runs: the trigger (in the triggerer, for ``cycles_per_event``
cycles at a time), the sensor (its first cycle, on a worker, so bad settings fail at once), the demo and the
tests. Decisions are absolute sizes, so replaying a cycle after a restart cannot grow or shrink the pool twice,
and every decision carries an id the actuator records.

The clients are built lazily and by explicit address: the Airflow REST API through :class:`AirflowApiHook`,
Ray's GCS through :class:`~mlk8s.ray_gcs.GcsClient` with the pool's token handed to it (never through the
process environment: the triggerer runs many triggers in one process), the infrastructure through an actuator.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mlk8s.ray_auth import token_from_env
from mlk8s.ray_gcs import GcsClient, RayState
from mlk8s.scaling import Decision, DecisionRequest, PolicyState, QueueSnapshot, ResourceDemand, decide
from mlk8s_airflow.actuators.base import Actuator, ActuatorMode, ApplyResult
from mlk8s_airflow.hooks.ray_connection import RayConnection
from mlk8s_airflow.ray_pool.history import error_record, time_series_point
from mlk8s_airflow.ray_pool.settings import RayPoolSettings
from mlk8s_airflow.ray_pool.workers import join_workers

log = logging.getLogger(__name__)


def decision_id(run_key: str, seq: int, now: float) -> str:
    """Unique per decision (a restarted loop reusing ``seq`` still gets a new id, as its time differs)."""
    return hashlib.sha256(f"{run_key}|{seq}|{now:.3f}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CycleResult:
    decisions: list[Decision]
    state: PolicyState
    point: dict[str, Any]
    applied: list[ApplyResult]


@dataclass
class RunReport:
    """What :meth:`RayPoolLoop.run` did: the state to carry on with, the new points and errors.

    ``failures``: failed cycles in a row at the end; ``error``: set once ``max_failed_cycles`` failed in a row
    (the caller fails the task); ``done``: ``until`` was reached.
    """

    state: PolicyState
    seq: int
    points: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    error: str | None = None
    done: bool = False

    def to_event(self) -> dict[str, Any]:
        return {
            "state": self.state.to_json(),
            "seq": self.seq,
            "points": self.points,
            "errors": self.errors,
            "failures": self.failures,
            "error": self.error,
            "done": self.done,
        }


class RayPoolLoop:
    """The loop for one sensor run (``run_key`` makes its decision ids unique). Synchronous: the trigger runs it
    in a thread."""

    def __init__(self, settings: RayPoolSettings, run_key: str, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.run_key = run_key
        self.clock = clock

    # -- clients -----------------------------------------------------------------------------------------------

    @cached_property
    def airflow_api(self) -> Any:
        from mlk8s_airflow.hooks.airflow_api import AirflowApiHook

        return AirflowApiHook(self.settings.airflow_api_conn_id)

    @cached_property
    def ray_connection(self) -> RayConnection:
        """The explicit ``ray_address``, else the ``ray_conn_id`` connection (its password is the token)."""
        if self.settings.ray_address:
            return RayConnection(self.settings.ray_address, token_from_env(), None)
        from mlk8s_airflow.hooks.ray_connection import RayHook

        return RayHook(self.settings.ray_conn_id).get_conn()

    @cached_property
    def gcs(self) -> GcsClient:
        token = self.ray_connection.token
        if token is None and self.settings.actuator is ActuatorMode.LOCAL:
            token = self._local_pool().token  # the local pool's own token, from its state dir
        return GcsClient(self.ray_connection.address, token=token)

    def _local_pool(self) -> Any:
        from mlk8s.local_ray.pool import LocalRayPool

        return LocalRayPool.from_env(self.settings.local_pool_dir)

    @cached_property
    def actuator(self) -> Actuator:
        s = self.settings
        if s.actuator is ActuatorMode.LOCAL:
            from mlk8s_airflow.actuators.local import LocalActuator

            return LocalActuator(
                self._local_pool(), s.groups, group_label=s.group_label, ray_address=self.ray_connection.address
            )
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from mlk8s_airflow.actuators.kuberay import KubeRayActuator

        api_client = KubernetesHook(conn_id=s.kubernetes_conn_id).api_client
        assert s.raycluster_name is not None and s.namespace is not None  # checked by RayPoolSettings
        return KubeRayActuator(api_client, name=s.raycluster_name, namespace=s.namespace, mode=s.actuator)

    def close(self) -> None:
        if "gcs" in self.__dict__:
            self.gcs.close()
        if "airflow_api" in self.__dict__:
            self.airflow_api.close()

    # -- one cycle ---------------------------------------------------------------------------------------------

    def read_queue(self, now: float) -> list[QueueSnapshot]:
        """One snapshot per Airflow pool: ``queue_pools`` (each with its task shape), else ``pool``."""
        next_run = None
        if self.settings.prewarm_dag_ids:
            times = self.airflow_api.next_dagrun_times(self.settings.prewarm_dag_ids)
            upcoming = [t.timestamp() for t in times.values() if t is not None and t.timestamp() >= now]
            next_run = min(upcoming) if upcoming else None
        pools: Mapping[str, ResourceDemand | None] = self.settings.queue_pools or {self.settings.pool: None}
        snapshots = []
        for pool, shape in pools.items():
            counts = self.airflow_api.count_task_instances(pool)
            snapshots.append(
                QueueSnapshot(
                    queued=counts.get("queued", 0),
                    scheduled=counts.get("scheduled", 0),
                    # A deferred task in the pool waits on its Ray job: running work, not backlog.
                    running=counts.get("running", 0) + counts.get("deferred", 0),
                    next_dagrun_run_after=next_run,
                    task_shape=shape,
                )
            )
        return snapshots

    def read_ray(self) -> RayState | None:
        """Ray's view, or None when the GCS cannot be read: the policy then grows on Airflow's queue alone
        and removes nothing (every running worker counts as busy)."""
        try:
            return self.gcs.cluster_state(self.settings.group_label)
        except Exception as exc:
            log.warning("ray pool: cannot read Ray's state at %s (%s); deciding without it", self.gcs.address, exc)
            return None

    def _decide(
        self, now: float, workers: list[Any], queues: list[QueueSnapshot], ray: RayState | None, state: PolicyState
    ) -> tuple[list[Decision], PolicyState]:
        demand = None if ray is None else ray.demand
        reply = decide(
            DecisionRequest(now, list(self.settings.groups), workers, queues, demand, self.settings.policy, state)
        )
        return list(reply.decisions), reply.state

    def cycle(self, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        now = self.clock() if now is None else now
        queues = self.read_queue(now)
        ray = self.read_ray()
        known = {g.name for g in self.settings.groups}
        members = [m for m in self.actuator.members() if m.group in known]
        workers = join_workers(members, ray, now)
        decisions, new_state = self._decide(now, workers, queues, ray, state)
        for d in decisions:
            log.info("ray pool decision %s: %s -> %s: %s", d.group, d.current, d.target, d.reason)
        applied: list[ApplyResult] = []
        if any(d.changes for d in decisions):
            applied = self.actuator.apply(decisions, workers, decision_id(self.run_key, seq, now))
            for r in applied:
                log.info("ray pool applied %s: %s", r.group, r.note)
        return CycleResult(decisions, new_state, time_series_point(now, queues, ray, decisions), applied)

    # -- the loop ----------------------------------------------------------------------------------------------

    def run(
        self,
        state: PolicyState,
        seq: int,
        *,
        cycles: int,
        until: float | None = None,
        max_failed_cycles: int = 5,
        failures: int = 0,
        wait_first: bool = True,
        stop: threading.Event | None = None,
        on_cycle: Callable[[CycleResult], None] | None = None,
    ) -> RunReport:
        """Up to ``cycles`` cycles, ``interval_s`` apart (and one interval before the first, unless
        ``wait_first`` is False), stopping early at ``until`` (epoch seconds), when ``stop`` is set, or once
        ``max_failed_cycles`` cycles have failed in a row (counting the ``failures`` carried over)."""
        stop = stop or threading.Event()
        report = RunReport(state=state, seq=seq, failures=failures)
        last_start: float | None = None
        for i in range(cycles):
            if wait_first or i > 0:
                since = 0.0 if last_start is None else time.monotonic() - last_start
                if stop.wait(max(0.0, self.settings.interval_s - since)):
                    break
            if until is not None and self.clock() >= until:
                break
            last_start = time.monotonic()
            report.seq += 1
            try:
                result = self.cycle(report.state, report.seq)
            except Exception as exc:
                report.failures += 1
                report.errors.append(error_record(self.clock(), report.seq, exc))
                log.warning("ray pool cycle %d failed (%d in a row): %s", report.seq, report.failures, exc)
                if report.failures >= max_failed_cycles:
                    report.error = f"{report.failures} ray pool cycles failed in a row; last error: {exc}"
                    break
                continue
            report.failures = 0
            report.state = result.state
            report.points.append(result.point)
            point = result.point
            log.info(
                "ray pool cycle %d: queued=%d running=%d pool=%d target=%d",
                report.seq,
                point["queued"],
                point["running"],
                point["pool"],
                point["target"],
            )
            if on_cycle is not None:
                on_cycle(result)
        report.done = until is not None and self.clock() >= until
        return report
