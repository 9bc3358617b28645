"""The Ray pool loop: read the Airflow queue and the Ray demand, decide with the pure policy, act, sleep.

:class:`RayPoolTrigger` runs the loop in the triggerer, so the sensor holds no worker slot for the life of
the pool. Every ``cycles_per_event`` cycles it hands the policy state and the new time-series points back to
the sensor (one :class:`TriggerEvent`), which stores them as XCom for the UI and defers again; the state in
the trigger's kwargs is therefore never more than one segment old if the triggerer restarts. Decisions are
absolute sizes, so replaying a cycle after a restart cannot grow or shrink the pool twice.

Blocking work (HTTP to the Airflow API, the GCS, the Kubernetes API, starting Ray nodes) runs in a thread
(``asyncio.to_thread``) so the triggerer's event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

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
)
from mlk8s_airflow.actuators.base import Actuator, ActuatorMode, ApplyResult, Member
from mlk8s_airflow.hooks.ray_demand import GROUP_LABEL, RayNodeActivity, RayState

log = logging.getLogger(__name__)

#: Reasons kept in the time series are cut to this length (XComs stay small).
POINT_REASON_CHARS = 240


@dataclass(frozen=True)
class RayPoolSettings:
    """Everything the loop needs, as plain JSON (it travels in the trigger's kwargs).

    ``groups`` are :class:`~mlk8s.scaling.WorkerGroupSpec` fields as dicts; ``policy`` holds
    :class:`~mlk8s.scaling.PolicyConfig` fields (``prewarm_demand`` as a list of ResourceDemand dicts).
    ``queue_pools`` maps Airflow pools to the shape of one of their tasks (``{"ray-gpu": {"cpus": 1,
    "gpus": 1}}``) when tasks of different shapes use different pools; empty, ``pool`` is the one queue.
    """

    groups: tuple[Mapping[str, Any], ...]
    actuator: str
    ray_address: str | None = None
    ray_conn_id: str = "ray_default"
    pool: str = "ray"
    queue_pools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    airflow_api_conn_id: str = "airflow_api_default"
    kubernetes_conn_id: str = "kubernetes_default"
    raycluster_name: str | None = None
    namespace: str | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)
    prewarm_dag_ids: tuple[str, ...] = ()
    group_label: str = GROUP_LABEL
    interval_s: float = 15.0
    history_length: int = 288

    def __post_init__(self) -> None:
        # Every check names the argument and the fix; they run before the sensor does any work.
        self.mode  # noqa: B018 - raises on an unknown actuator
        self.worker_groups  # noqa: B018
        self.policy_config  # noqa: B018
        if not self.pool:
            raise ValueError("pool is empty; pass the Airflow pool the Ray work runs in (default 'ray')")
        for name, shape in self.queue_pools.items():
            try:
                ResourceDemand(**dict(shape))
            except TypeError as exc:
                raise ValueError(
                    f"queue_pools[{name!r}]={shape!r}: {exc}; give each pool the shape of one of its tasks, "
                    "e.g. {'cpus': 1, 'gpus': 1}"
                ) from exc
        if self.ray_address is not None and ":" not in self.ray_address:
            raise ValueError(
                f"ray_address={self.ray_address!r}; pass the Ray GCS address as host:port "
                "(KubeRay: <cluster>-head-svc.<namespace>:6379), or leave it None to use ray_conn_id"
            )
        if self.mode is not ActuatorMode.LOCAL and not (self.raycluster_name and self.namespace):
            raise ValueError(
                f"actuator={self.actuator!r} needs raycluster_name and namespace (the RayCluster to resize)"
            )
        if not self.interval_s > 0:
            raise ValueError(f"interval_s={self.interval_s!r}; pass the seconds between cycles (> 0)")
        if self.history_length < 1:
            raise ValueError(f"history_length={self.history_length!r}; pass how many points to keep (>= 1)")

    @property
    def mode(self) -> ActuatorMode:
        return ActuatorMode.parse(self.actuator)

    @property
    def worker_groups(self) -> list[WorkerGroupSpec]:
        if not self.groups:
            raise ValueError(
                "groups is empty; pass one dict per Ray worker group, e.g. "
                "{'name': 'cpu', 'min_workers': 0, 'max_workers': 4, 'cpus_per_worker': 2}"
            )
        out = []
        for i, raw in enumerate(self.groups):
            try:
                out.append(WorkerGroupSpec(**dict(raw)))
            except TypeError as exc:
                raise ValueError(f"groups[{i}]: {exc}; allowed keys are the fields of WorkerGroupSpec") from exc
        return out

    @property
    def policy_config(self) -> PolicyConfig:
        raw = dict(self.policy)
        prewarm = tuple(ResourceDemand(**dict(d)) for d in raw.pop("prewarm_demand", ()) or ())
        try:
            return PolicyConfig(**raw, prewarm_demand=prewarm)
        except TypeError as exc:
            raise ValueError(f"policy: {exc}; allowed keys are the fields of PolicyConfig") from exc

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = [dict(g) for g in self.groups]
        data["policy"] = dict(self.policy)
        data["queue_pools"] = {k: dict(v) for k, v in self.queue_pools.items()}
        data["prewarm_dag_ids"] = list(self.prewarm_dag_ids)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RayPoolSettings:
        data = dict(data)
        data["groups"] = tuple(dict(g) for g in data.get("groups", ()))
        data["prewarm_dag_ids"] = tuple(data.get("prewarm_dag_ids", ()))
        data["policy"] = dict(data.get("policy") or {})
        data["queue_pools"] = {k: dict(v) for k, v in (data.get("queue_pools") or {}).items()}
        return cls(**data)


def join_workers(members: Sequence[Member], ray: RayState | None, now: float) -> list[Worker]:
    """The policy's view of each member: pending until Ray knows it, then busy or idle as Ray says.

    A member Ray does not know yet (a pod still starting, a node still joining) is ``pending``: it counts
    toward the group's size but offers no capacity, and it is never mistaken for an idle worker. When Ray
    cannot be read at all (``ray`` None), every running member is taken as busy: the pool may still grow
    for Airflow's queue, but nothing is removed on a guess.
    """
    if ray is None:
        return [
            Worker(id=m.id, group=m.group, busy=not m.pending, started_at=m.started_at, pending=m.pending)
            for m in members
        ]
    by_key: dict[str, RayNodeActivity] = {}
    for node in ray.nodes:
        for key in (node.node_id, node.instance_id):
            if key:
                by_key[key] = node
    ip_count: dict[str, int] = {}
    for node in ray.nodes:
        ip_count[node.ip] = ip_count.get(node.ip, 0) + 1
    for node in ray.nodes:  # an IP identifies a node only when no other node shares it
        if node.ip and ip_count[node.ip] == 1:
            by_key.setdefault(node.ip, node)
    workers = []
    for m in members:
        found = next((by_key[k] for k in m.ray_keys if k in by_key), None)
        if m.pending or found is None:
            workers.append(Worker(id=m.id, group=m.group, busy=False, started_at=m.started_at, pending=True))
        else:
            idle_since = None if found.busy else now - found.idle_ms / 1000.0
            workers.append(
                Worker(
                    id=m.id,
                    group=m.group,
                    busy=found.busy,
                    started_at=m.started_at,
                    idle_since=idle_since,
                    free_cpus=found.free_cpus,
                    free_gpus=found.free_gpus,
                    free_memory=found.free_memory,
                )
            )
    return workers


def decision_id(run_key: str, seq: int, now: float) -> str:
    """Unique per decision (a restarted loop reusing ``seq`` still gets a new id, as its time differs)."""
    return hashlib.sha256(f"{run_key}|{seq}|{now:.3f}".encode()).hexdigest()[:16]


def time_series_point(
    now: float, queues: Sequence[QueueSnapshot], ray: RayState | None, decisions: Sequence[Decision]
) -> dict[str, Any]:
    """One point for the UI: queue length vs pool size, and why the pool is what it is."""
    changing = [d for d in decisions if d.changes]
    reason = " | ".join(f"{d.group}: {d.reason}" for d in (changing or decisions[:1]))
    return {
        "t": round(now, 3),
        "queued": sum(q.queued + q.scheduled for q in queues),
        "running": sum(q.running for q in queues),
        "ray_pending": None if ray is None else ray.pending_requests,
        "pool": sum(d.current for d in decisions),
        "target": sum(d.target for d in decisions),
        "groups": {d.group: [d.current, d.target] for d in decisions},
        "reason": reason[:POINT_REASON_CHARS],
    }


@dataclass(frozen=True)
class CycleResult:
    decisions: list[Decision]
    state: PolicyState
    point: dict[str, Any]
    applied: list[ApplyResult]


class RayPoolLoop:
    """One cycle at a time (synchronous; the trigger runs it in a thread). Builds its clients lazily."""

    def __init__(self, settings: RayPoolSettings, run_key: str) -> None:
        self.settings = settings
        self.run_key = run_key
        self.groups = settings.worker_groups
        self.config = settings.policy_config

    @cached_property
    def airflow_api(self) -> Any:
        from mlk8s_airflow.hooks.airflow_api import AirflowApiHook

        return AirflowApiHook(self.settings.airflow_api_conn_id)

    @cached_property
    def ray_address(self) -> str:
        """The explicit ``ray_address``, else host:port of ``ray_conn_id`` (whose password, if set, is the
        cluster's auth token: Ray reads it from the environment)."""
        if self.settings.ray_address:
            return self.settings.ray_address
        from mlk8s_airflow.hooks.ray_connection import RayHook

        conn = RayHook(self.settings.ray_conn_id).get_conn()
        if conn.token:
            # TODO(issue 9): hand the token to the GCS client explicitly instead of the shared process env.
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = conn.token
        return conn.address

    @cached_property
    def ray_reader(self) -> Any:
        from mlk8s_airflow.hooks.ray_demand import RayDemandReader

        return RayDemandReader(self.ray_address, group_label=self.settings.group_label)

    @cached_property
    def actuator(self) -> Actuator:
        s = self.settings
        if s.mode is ActuatorMode.LOCAL:
            from mlk8s_airflow.actuators.local import LocalActuator, registered_cluster

            return LocalActuator(registered_cluster(self.ray_address), self.groups, group_label=s.group_label)
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from mlk8s_airflow.actuators.kuberay import KubeRayActuator

        api_client = KubernetesHook(conn_id=s.kubernetes_conn_id).api_client
        assert s.raycluster_name is not None and s.namespace is not None  # checked in RayPoolSettings
        return KubeRayActuator(api_client, name=s.raycluster_name, namespace=s.namespace, mode=s.mode)

    def read_queue(self, now: float) -> list[QueueSnapshot]:
        """One snapshot per Airflow pool: ``queue_pools`` (each with its task shape), else ``pool``."""
        next_run = None
        if self.settings.prewarm_dag_ids:
            times = self.airflow_api.next_dagrun_times(self.settings.prewarm_dag_ids)
            upcoming = [t.timestamp() for t in times.values() if t is not None and t.timestamp() >= now]
            next_run = min(upcoming) if upcoming else None
        pools: dict[str, Mapping[str, Any] | None] = dict(self.settings.queue_pools) or {self.settings.pool: None}
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
                    task_shape=ResourceDemand(**dict(shape)) if shape else None,
                )
            )
        return snapshots

    def read_ray(self) -> RayState | None:
        """Ray's view, or None when the GCS cannot be read: the policy then grows on Airflow's queue alone
        and removes nothing (every running worker counts as busy)."""
        try:
            return self.ray_reader.read()  # type: ignore[no-any-return]
        except Exception as exc:
            log.warning("ray pool: cannot read Ray's state at %s (%s); deciding without it", self.ray_address, exc)
            return None

    def cycle(self, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        now = time.time() if now is None else now
        queues = self.read_queue(now)
        ray = self.read_ray()
        members = self.actuator.members()
        known = {g.name for g in self.groups}
        workers = join_workers([m for m in members if m.group in known], ray, now)
        demand = None if ray is None else ray.demand
        reply = decide(DecisionRequest(now, self.groups, workers, queues, demand, self.config, state))
        decisions, new_state = list(reply.decisions), reply.state
        for d in decisions:
            log.info("ray pool decision %s: %s -> %s: %s", d.group, d.current, d.target, d.reason)
        applied: list[ApplyResult] = []
        if any(d.changes for d in decisions):
            applied = self.actuator.apply(decisions, workers, decision_id(self.run_key, seq, now))
            for r in applied:
                log.info("ray pool applied %s: %s", r.group, r.note)
        return CycleResult(decisions, new_state, time_series_point(now, queues, ray, decisions), applied)


def append_history(history: list[dict[str, Any]], points: Sequence[dict[str, Any]], limit: int) -> list[Any]:
    return (list(history) + list(points))[-limit:]


class RayPoolTrigger(BaseTrigger):
    """Runs :class:`RayPoolLoop` for ``cycles_per_event`` cycles (or until ``run_until``), then reports.

    The event payload: ``state`` (PolicyState JSON), ``seq``, ``points`` (new time-series points),
    ``failures`` (failed cycles in a row so far), ``done`` (``run_until`` reached), ``error`` (set after
    ``max_failed_cycles`` failed cycles in a row: the sensor fails, and Airflow's retries take over).
    """

    def __init__(
        self,
        settings: dict[str, Any],
        run_key: str,
        state: dict[str, Any] | None = None,
        seq: int = 0,
        cycles_per_event: int = 20,
        run_until: float | None = None,
        max_failed_cycles: int = 5,
        failures: int = 0,
    ) -> None:
        super().__init__()
        self.failures = failures
        self.settings = settings
        self.run_key = run_key
        self.state = state
        self.seq = seq
        self.cycles_per_event = cycles_per_event
        self.run_until = run_until
        self.max_failed_cycles = max_failed_cycles

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "settings": self.settings,
                "run_key": self.run_key,
                "state": self.state,
                "seq": self.seq,
                "cycles_per_event": self.cycles_per_event,
                "run_until": self.run_until,
                "max_failed_cycles": self.max_failed_cycles,
                "failures": self.failures,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        settings = RayPoolSettings.from_json(self.settings)
        loop = RayPoolLoop(settings, self.run_key)
        state = PolicyState.from_json(self.state)
        seq = self.seq
        points: list[dict[str, Any]] = []
        failures = self.failures
        error: str | None = None
        cycles = 0
        # The sensor ran the cycle before this one; sleeping first keeps cycles evenly spaced across events.
        while cycles < self.cycles_per_event:
            await asyncio.sleep(settings.interval_s)
            if self.run_until is not None and time.time() >= self.run_until:
                break
            seq += 1
            cycles += 1
            try:
                result = await asyncio.to_thread(loop.cycle, state, seq)
            except Exception as exc:
                failures += 1
                self.log.warning("ray pool cycle %d failed (%d in a row): %s", seq, failures, exc)
                if failures >= self.max_failed_cycles:
                    error = f"{failures} ray pool cycles failed in a row; last error: {exc}"
                    break
                continue
            failures = 0
            state = result.state
            points.append(result.point)
            self.log.info(
                "ray pool cycle %d: queued=%d running=%d pool=%d target=%d",
                seq,
                result.point["queued"],
                result.point["running"],
                result.point["pool"],
                result.point["target"],
            )
        done = self.run_until is not None and time.time() >= self.run_until
        yield TriggerEvent(
            {
                "state": state.to_json(),
                "seq": seq,
                "points": points,
                "failures": failures,
                "done": done,
                "error": error,
            }
        )
