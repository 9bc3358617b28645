"""Resize a local Ray cluster by starting and stopping real worker nodes (``mlk8s.local_ray``).

This is what makes ``make demo`` scale for real on one machine. A worker is removed in two steps: the GCS is
asked to drain it for idle termination, which it refuses if the node picked up work since we looked (so a
busy worker is never killed, even in a race), and only then is its process stopped.

The nodes are processes of the :class:`~mlk8s.local_ray.LocalRayCluster` that started them, so this actuator
needs that object: the demo (or test) that starts the cluster registers it with :func:`register_cluster`, and
the sensor finds it by its GCS address.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlk8s.scaling import Decision, Worker, WorkerGroupSpec
from mlk8s_airflow.actuators.base import Actuator, ActuatorError, ActuatorMode, ApplyResult, Member
from mlk8s_airflow.hooks.ray_demand import GROUP_LABEL, RayDemandReader

if TYPE_CHECKING:
    from mlk8s.local_ray import LocalRayCluster

log = logging.getLogger(__name__)

_registry: dict[str, LocalRayCluster] = {}
_registry_lock = threading.Lock()


def register_cluster(cluster: LocalRayCluster) -> None:
    """Let a sensor in this process resize ``cluster`` (found by ``cluster.address``)."""
    with _registry_lock:
        _registry[cluster.address] = cluster


def unregister_cluster(cluster: LocalRayCluster) -> None:
    with _registry_lock:
        for address, known in list(_registry.items()):
            if known is cluster:
                del _registry[address]


def registered_cluster(address: str) -> LocalRayCluster:
    with _registry_lock:
        cluster = _registry.get(address)
    if cluster is None:
        raise ActuatorError(
            f"actuator='local' found no local Ray cluster at ray_address={address!r} in this process: the local "
            "actuator starts and stops the nodes of a LocalRayCluster that mlk8s_airflow.actuators.local."
            "register_cluster() was given (make demo does this); on Kubernetes use actuator='kuberay-own' or "
            "'kuberay-cooperate'"
        )
    return cluster


class LocalActuator(Actuator):
    mode = ActuatorMode.LOCAL

    def __init__(
        self,
        cluster: LocalRayCluster,
        groups: Sequence[WorkerGroupSpec],
        *,
        group_label: str = GROUP_LABEL,
    ) -> None:
        for spec in groups:
            if spec.cpus_per_worker != int(spec.cpus_per_worker) or spec.gpus_per_worker != int(spec.gpus_per_worker):
                raise ValueError(
                    f"group {spec.name!r}: the local actuator starts nodes with whole CPUs/GPUs; set "
                    f"cpus_per_worker/gpus_per_worker to integers (got {spec.cpus_per_worker}, "
                    f"{spec.gpus_per_worker})"
                )
        self.cluster = cluster
        self.groups = {g.name: g for g in groups}
        self.group_label = group_label
        self.reader = RayDemandReader(cluster.address, group_label=group_label)
        self._started: dict[str, float] = {}
        self._applied: set[str] = set()

    def members(self) -> list[Member]:
        out = []
        for info in self.cluster.nodes():
            group = info.labels.get(self.group_label)
            if info.head or not group:
                continue
            out.append(
                Member(
                    id=info.node_id,
                    group=group,
                    started_at=self._started.get(info.node_id, 0.0),
                    ray_keys=(info.node_id,),
                )
            )
        return sorted(out, key=lambda m: m.id)

    def apply(self, decisions: Sequence[Decision], workers: Sequence[Worker], decision_id: str) -> list[ApplyResult]:
        if decision_id in self._applied:
            return [ApplyResult(d.group, False, f"decision {decision_id} already applied") for d in decisions]
        busy = {w.id for w in workers if w.busy}
        results = []
        for d in decisions:
            spec = self.groups.get(d.group)
            if spec is None:
                raise ActuatorError(f"decision for unknown group {d.group!r}; known: {sorted(self.groups)}")
            if d.target > d.current:
                added = []
                for _ in range(d.target - d.current):
                    node_id = self.cluster.add_worker(
                        num_cpus=int(spec.cpus_per_worker),
                        num_gpus=int(spec.gpus_per_worker),
                        labels={self.group_label: d.group},
                    )
                    self._started[node_id] = time.time()
                    added.append(node_id[:8])
                results.append(ApplyResult(d.group, True, f"started {len(added)} node(s): {', '.join(added)}"))
            elif d.remove:
                candidates = [n for n in d.remove if n not in busy]
                refused = {n: "busy when the decision was made" for n in d.remove if n in busy}
                drained = self.reader.drain_idle(candidates, f"mlk8s ray pool: {d.reason[:200]}")
                stopped = []
                for node_id, why in drained.items():
                    if why is not None:
                        refused[node_id] = why
                        continue
                    if node_id in self.cluster.worker_ids():
                        self.cluster.remove_worker(node_id)
                    self._started.pop(node_id, None)
                    stopped.append(node_id[:8])
                note = f"stopped {len(stopped)} idle node(s): {', '.join(stopped) or '-'}"
                if refused:
                    note += f"; kept {', '.join(f'{k[:8]} ({v})' for k, v in refused.items())}"
                results.append(ApplyResult(d.group, bool(stopped), note))
            else:
                results.append(ApplyResult(d.group, False, "no change"))
        self._applied.add(decision_id)
        for r in results:
            log.info("local actuator %s: %s", r.group, r.note)
        return results
