"""The policy's view of the pool: each member the infrastructure lists, busy or idle as Ray says.

The actuator lists members as the infrastructure sees them (pods, local Ray nodes); the GCS says which Ray
nodes are busy. A member Ray does not know yet (a pod still starting, a node still joining) is ``pending``: it
counts toward its group's size but offers no capacity, and it is never mistaken for an idle worker. When Ray
cannot be read at all, every running member is taken as busy: the pool may still grow for Airflow's queue,
but nothing is removed on a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlk8s.ray_gcs import RayNodeActivity, RayState
from mlk8s.scaling import Worker
from mlk8s_airflow.actuators.base import Member


def _nodes_by_key(ray: RayState) -> dict[str, RayNodeActivity]:
    """Ray nodes by node id, instance id (the pod name on KubeRay), and IP where no other node shares it."""
    by_key: dict[str, RayNodeActivity] = {}
    for node in ray.nodes:
        for key in (node.node_id, node.instance_id):
            if key:
                by_key[key] = node
    ip_count: dict[str, int] = {}
    for node in ray.nodes:
        ip_count[node.ip] = ip_count.get(node.ip, 0) + 1
    for node in ray.nodes:
        if node.ip and ip_count[node.ip] == 1:
            by_key.setdefault(node.ip, node)
    return by_key


def join_workers(members: Sequence[Member], ray: RayState | None, now: float) -> list[Worker]:
    """One :class:`~mlk8s.scaling.Worker` per member; see the module docstring."""
    if ray is None:
        return [
            Worker(id=m.id, group=m.group, busy=not m.pending, started_at=m.started_at, pending=m.pending)
            for m in members
        ]
    by_key = _nodes_by_key(ray)
    workers = []
    for m in members:
        found = next((by_key[k] for k in m.ray_keys if k in by_key), None)
        if m.pending or found is None:
            workers.append(Worker(id=m.id, group=m.group, busy=False, started_at=m.started_at, pending=True))
            continue
        workers.append(
            Worker(
                id=m.id,
                group=m.group,
                busy=found.busy,
                started_at=m.started_at,
                idle_since=None if found.busy else now - found.idle_ms / 1000.0,
                free_cpus=found.free_cpus,
                free_gpus=found.free_gpus,
                free_memory=found.free_memory,
            )
        )
    return workers
