"""Resize the local Ray pool (``mlk8s.local_ray.pool``) by starting and stopping real worker nodes.

This is what makes the Ray pool sensor scale for real on one machine, from whichever Airflow process it runs
in (scheduler, triggerer, worker): the pool is a service found by its state dir (``MLK8S_LOCAL_RAY_POOL`` or
the sensor's ``local_pool_dir``), the same way the KubeRay actuator finds its RayCluster by name. The
interface mirrors the KubeRay actuator: the members of each worker group, grow to a target, and remove idle
workers. A worker is removed in two steps: the GCS is asked to drain it for idle termination, which it
refuses if the node picked up work since we looked (so a busy worker is never killed, even in a race), and
only then is its process stopped. A decision id is claimed in the pool's state, so a replayed decision (a
restarted trigger) is not applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mlk8s.local_ray.pool import LocalRayPool
from mlk8s.ray_gcs import GROUP_LABEL
from mlk8s.scaling import Decision, Worker, WorkerGroupSpec
from mlk8s_airflow.actuators.base import Actuator, ActuatorError, ActuatorMode, ApplyResult, Member

log = logging.getLogger(__name__)


class LocalActuator(Actuator):
    mode = ActuatorMode.LOCAL

    def __init__(
        self,
        pool: LocalRayPool,
        groups: Sequence[WorkerGroupSpec],
        *,
        group_label: str = GROUP_LABEL,
        ray_address: str | None = None,
    ) -> None:
        for spec in groups:
            if spec.cpus_per_worker != int(spec.cpus_per_worker) or spec.gpus_per_worker != int(spec.gpus_per_worker):
                raise ValueError(
                    f"group {spec.name!r}: the local actuator starts nodes with whole CPUs/GPUs; set "
                    f"cpus_per_worker/gpus_per_worker to integers (got {spec.cpus_per_worker}, "
                    f"{spec.gpus_per_worker})"
                )
        self.pool = pool
        self.groups = {g.name: g for g in groups}
        self.group_label = group_label
        self.ray_address = ray_address

    def _check_pool(self) -> str:
        """The pool's address, refusing a pool other than the one whose demand the loop reads."""
        info = self.pool.running()
        if self.ray_address is not None and info.address != self.ray_address:
            raise ActuatorError(
                f"the local Ray pool at {self.pool.state_dir} runs at {info.address}, but the sensor reads Ray's "
                f"demand from {self.ray_address}: point the ray_default connection (or ray_address) at the pool"
            )
        return info.address

    def members(self) -> list[Member]:
        self._check_pool()
        out = []
        for record in self.pool.running().workers:
            group = record.spec.labels.get(self.group_label)
            if group in self.groups:
                out.append(
                    Member(id=record.node_id, group=group, started_at=record.started_at, ray_keys=(record.node_id,))
                )
        return sorted(out, key=lambda m: m.id)

    def apply(self, decisions: Sequence[Decision], workers: Sequence[Worker], decision_id: str) -> list[ApplyResult]:
        self._check_pool()
        for d in decisions:
            if d.group not in self.groups:
                raise ActuatorError(f"decision for unknown group {d.group!r}; known: {sorted(self.groups)}")
        if not self.pool.claim_decision(decision_id):
            return [ApplyResult(d.group, False, f"decision {decision_id} already applied") for d in decisions]
        busy = {w.id for w in workers if w.busy}
        results = []
        for d in decisions:
            if d.target > d.current:
                results.append(self._grow(self.groups[d.group], d.target - d.current))
            elif d.remove:
                results.append(self._remove_idle(d, busy))
            else:
                results.append(ApplyResult(d.group, False, "no change"))
        for r in results:
            log.info("local actuator %s: %s", r.group, r.note)
        return results

    def _grow(self, spec: WorkerGroupSpec, count: int) -> ApplyResult:
        added = []
        for _ in range(count):
            record = self.pool.add_worker(
                int(spec.cpus_per_worker), int(spec.gpus_per_worker), labels={self.group_label: spec.name}
            )
            added.append(record.node_id[:8])
        return ApplyResult(spec.name, True, f"started {len(added)} node(s): {', '.join(added)}")

    def _remove_idle(self, decision: Decision, busy: set[str]) -> ApplyResult:
        candidates = [n for n in decision.remove if n not in busy]
        refused = {n: "busy when the decision was made" for n in decision.remove if n in busy}
        with self.pool.gcs() as gcs:
            drained = gcs.drain_idle(candidates, f"mlk8s ray pool: {decision.reason[:200]}")
        known = {r.node_id for r in self.pool.running().workers}
        stopped = []
        for node_id, why in drained.items():
            if why is not None:
                refused[node_id] = why
                continue
            if node_id in known:
                self.pool.remove_worker(node_id)
            stopped.append(node_id[:8])
        note = f"stopped {len(stopped)} idle node(s): {', '.join(stopped) or '-'}"
        if refused:
            note += f"; kept {', '.join(f'{k[:8]} ({v})' for k, v in refused.items())}"
        return ApplyResult(decision.group, bool(stopped), note)
