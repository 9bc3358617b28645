"""A DAG-level sensor that sizes the Ray worker pool from the Airflow tasks queued for it.

It runs for the life of the pool: one cycle on a worker at start (so bad settings, connections or a
mismatched RayCluster fail at once, before any deferral), then in the triggerer (:class:`RayPoolTrigger`),
coming back to a worker only every ``cycles_per_event`` cycles to store the time series and the policy
state. It does not use reschedule mode: Airflow 3 clears a task's XComs whenever it starts again other than
from a deferral, which would lose the policy state and the history at every poke.

Every decision is logged with its reason, and the time series of (time, queued, running, pool size,
target, reason) is kept as the XCom ``ray_pool_history`` (bounded), which the plugin's "Ray pool" view plots;
the loop's failed cycles are kept as the XCom ``ray_pool_errors`` (their time and message), so a pool whose
every cycle fails shows why. Both are described in :mod:`mlk8s_airflow.ray_pool.history`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from mlk8s.ray_gcs import GROUP_LABEL
from mlk8s_airflow.ray_pool.history import (
    ERRORS_KEPT,
    ERRORS_XCOM_KEY,
    HISTORY_XCOM_KEY,
    STATE_XCOM_KEY,
    append_bounded,
)
from mlk8s_airflow.ray_pool.settings import RayPoolSettings
from mlk8s_airflow.triggers.ray_pool import RayPoolTrigger


class RayPoolSensor(BaseSensorOperator):
    """Sizes the Ray pool from Airflow's queue and Ray's pending demand; see the module docstring.

    :param groups: one dict per Ray worker group: ``name``, ``min_workers``, ``max_workers``,
        ``cpus_per_worker``, optional ``gpus_per_worker``, ``memory_per_worker`` (bytes). On KubeRay the
        names are the RayCluster's ``groupName``s.
    :param actuator: ``local`` (worker nodes of the local Ray pool service), ``kuberay-own`` (in-tree
        autoscaling off: replicas + workersToDelete) or ``kuberay-cooperate`` (in-tree autoscaler on:
        minReplicas only).
    :param ray_conn_id: Connection naming the Ray head (host, port 6379; password = the cluster's auth
        token when this process has none), the same one the preprocessing operator uses.
    :param ray_address: ``host:port`` of the Ray GCS, overriding ``ray_conn_id`` (tests, the local demo).
    :param pool: the Airflow pool whose task instances are the queue (default ``ray``).
    :param airflow_api_conn_id: Connection to Airflow's REST API (host = API base URL, login/password).
    :param kubernetes_conn_id: Connection for ``KubernetesHook`` (kuberay actuators).
    :param raycluster_name: the RayCluster to resize (kuberay actuators); with ``namespace``.
    :param local_pool_dir: the local Ray pool's state dir (``local`` actuator; default ``$MLK8S_LOCAL_RAY_POOL``).
    :param policy: :class:`~mlk8s.scaling.PolicyConfig` fields (``scale_down_window_s``,
        ``cpus_per_task``, ...).
    :param prewarm_dag_ids: DAGs whose next scheduled run pre-warms the pool (``policy.prewarm_s`` ahead).
    :param interval_s: seconds between cycles.
    :param cycles_per_event: cycles the trigger runs before the sensor stores history and state.
    :param run_for_s: stop (succeed) after this long; None runs for the life of the DAG run.
    :param history_length: points kept in the ``ray_pool_history`` XCom.
    :param max_failed_cycles: failed cycles in a row (after each call's own retries) before the task fails.
    """

    template_fields: Sequence[str] = (
        "actuator",
        "groups",
        "queue_pool",
        "queue_pools",
        "ray_conn_id",
        "ray_address",
        "raycluster_name",
        "namespace",
        "local_pool_dir",
        "policy",
        "interval_s",
        "run_for_s",
    )
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        groups: Sequence[Mapping[str, Any]],
        actuator: str,
        ray_conn_id: str = "ray_default",
        ray_address: str | None = None,
        queue_pool: str = "ray",
        queue_pools: Mapping[str, Mapping[str, Any]] | None = None,
        airflow_api_conn_id: str = "airflow_api_default",
        kubernetes_conn_id: str = "kubernetes_default",
        raycluster_name: str | None = None,
        namespace: str | None = None,
        local_pool_dir: str | None = None,
        policy: Mapping[str, Any] | None = None,
        prewarm_dag_ids: Sequence[str] = (),
        interval_s: float = 15.0,
        cycles_per_event: int = 20,
        run_for_s: float | None = None,
        history_length: int = 288,
        max_failed_cycles: int = 5,
        group_label: str = GROUP_LABEL,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", timedelta(days=365).total_seconds())
        super().__init__(**kwargs)
        self.groups = groups
        self.actuator = actuator
        self.ray_conn_id = ray_conn_id
        self.ray_address = ray_address
        self.queue_pool = queue_pool
        self.queue_pools = queue_pools
        self.airflow_api_conn_id = airflow_api_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.raycluster_name = raycluster_name
        self.namespace = namespace
        self.local_pool_dir = local_pool_dir
        self.policy = policy
        self.prewarm_dag_ids = prewarm_dag_ids
        self.interval_s = interval_s
        self.cycles_per_event = cycles_per_event
        self.run_for_s = run_for_s
        self.history_length = history_length
        self.max_failed_cycles = max_failed_cycles
        self.group_label = group_label

    def settings(self) -> RayPoolSettings:
        """The validated settings; every bad argument raises here, naming the argument and the fix."""
        if self.cycles_per_event < 1:
            raise ValueError(f"cycles_per_event={self.cycles_per_event!r}; pass an integer >= 1")
        if self.run_for_s is not None and not float(self.run_for_s) > 0:
            raise ValueError(f"run_for_s={self.run_for_s!r}; pass seconds > 0, or None to run for the DAG run")
        return RayPoolSettings.parse(
            {
                "groups": [dict(g) for g in self.groups],
                "actuator": self.actuator,
                "ray_address": self.ray_address or None,
                "ray_conn_id": self.ray_conn_id,
                "pool": self.queue_pool,
                "queue_pools": {k: dict(v) for k, v in (self.queue_pools or {}).items()},
                "airflow_api_conn_id": self.airflow_api_conn_id,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "raycluster_name": self.raycluster_name,
                "namespace": self.namespace,
                "local_pool_dir": self.local_pool_dir or None,
                "policy": dict(self.policy or {}),
                "prewarm_dag_ids": list(self.prewarm_dag_ids),
                "group_label": self.group_label,
                "interval_s": self.interval_s,
                "history_length": self.history_length,
            }
        )

    @staticmethod
    def run_key(context: Mapping[str, Any]) -> str:
        ti = context["ti"]
        return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.try_number}"

    def execute(self, context: Any) -> Any:
        """One cycle here, on the worker (bad settings, connections or a mismatched pool fail at once), then defer."""
        settings = self.settings()
        from mlk8s.scaling import PolicyState
        from mlk8s_airflow.ray_pool.loop import RayPoolLoop

        loop = RayPoolLoop(settings, self.run_key(context))
        try:
            report = loop.run(PolicyState(), 0, cycles=1, wait_first=False, max_failed_cycles=1)
        finally:
            loop.close()
        self._store(context, report.points, report.state.to_json(), report.errors)
        if report.error:
            raise AirflowException(report.error)
        run_until = None if self.run_for_s is None else time.time() + float(self.run_for_s)
        self._defer(settings, context, report.state.to_json(), report.seq, run_until, 0)

    def _defer(
        self,
        settings: RayPoolSettings,
        context: Any,
        state: dict[str, Any],
        seq: int,
        run_until: float | None,
        failures: int,
    ) -> None:
        self.defer(
            trigger=RayPoolTrigger(
                settings=settings.to_json(),
                run_key=self.run_key(context),
                state=state,
                seq=seq,
                cycles_per_event=self.cycles_per_event,
                run_until=run_until,
                max_failed_cycles=self.max_failed_cycles,
                failures=failures,
            ),
            method_name="execute_complete",
            kwargs={"run_until": run_until},
        )

    def _store(
        self, context: Any, history: list[dict[str, Any]], state: dict[str, Any], errors: list[dict[str, Any]]
    ) -> None:
        ti = context["ti"]
        ti.xcom_push(key=HISTORY_XCOM_KEY, value=history)
        ti.xcom_push(key=STATE_XCOM_KEY, value=state)
        ti.xcom_push(key=ERRORS_XCOM_KEY, value=errors)

    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any],
        run_until: float | None = None,
    ) -> Any:
        settings = self.settings()
        ti = context["ti"]
        # XComs survive a deferral (not a reschedule), so the history so far is where we left it.
        history = append_bounded(
            ti.xcom_pull(task_ids=ti.task_id, key=HISTORY_XCOM_KEY) or [],
            event.get("points", []),
            settings.history_length,
        )
        errors = append_bounded(
            ti.xcom_pull(task_ids=ti.task_id, key=ERRORS_XCOM_KEY) or [], event.get("errors", []), ERRORS_KEPT
        )
        self._store(context, history, event["state"], errors)
        for point in event.get("points", []):
            self.log.info(
                "pool %s -> %s for %s queued / %s running: %s",
                point["pool"],
                point["target"],
                point["queued"],
                point["running"],
                point["reason"],
            )
        for error in event.get("errors", []):
            self.log.warning("ray pool cycle %s failed: %s", error.get("cycle"), error.get("message"))
        if event.get("error"):
            raise AirflowException(event["error"])
        if event.get("done"):
            last = history[-1] if history else {}
            return {"cycles": event["seq"], "pool": last.get("pool"), "target": last.get("target")}
        self._defer(settings, context, event["state"], event["seq"], run_until, event.get("failures", 0))
