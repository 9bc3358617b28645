"""How big the pipeline's Ray workers are: what the pool has now and what it can scale to.

A KubeRay pool typically starts with a zero-CPU head and its worker groups at zero replicas, so
``ray.cluster_resources()`` at the start of a run says neither how big a worker node is nor that a GPU group
exists. The autoscaler publishes its cluster config (each node group's resources and max count) in the GCS;
when it is there, it is the answer, else the nodes alive now are (a local cluster, a fixed pool).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolShape:
    cpus_now: float
    #: The most GPUs the pool can have (scaled out), 0 when no node group has any.
    max_gpus: float
    #: CPUs of the smallest CPU-only node (group): the most one worker can reserve and still fit every node.
    cpus_per_node: float


def pool_shape() -> PoolShape:
    """The pool's shape, from the autoscaler's config when the pool autoscales, else from its alive nodes."""
    import ray

    cpus_now = float(ray.cluster_resources().get("CPU", 0) or 0)
    groups = _node_groups()
    nodes = groups if groups else _alive_nodes()
    cpu_nodes = [r for r in nodes if r.get("CPU", 0) >= 1 and not r.get("GPU", 0)]
    cpus_per_node = min((float(r["CPU"]) for r in cpu_nodes), default=max(1.0, cpus_now))
    max_gpus = max(float(ray.cluster_resources().get("GPU", 0) or 0), _max_from_config("GPU"))
    return PoolShape(cpus_now=cpus_now or 1.0, max_gpus=max_gpus, cpus_per_node=max(1.0, cpus_per_node))


def _state() -> Any:
    from mlk8s import compat

    return compat.get("ray.state")


def _node_groups() -> list[dict[str, float]]:
    """Each autoscaled node group's resources (groups with a max count of 0 left out); [] without a config."""
    try:
        config = _state().get_cluster_config()
    except Exception as exc:  # an older GCS, no permission: the nodes alive now are the answer
        logger.debug("no autoscaler cluster config: %s", exc)
        return []
    if config is None:
        return []
    return [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]


def _max_from_config(resource: str) -> float:
    try:
        most = _state().get_max_resources_from_cluster_config()
    except Exception as exc:
        logger.debug("no autoscaler cluster config: %s", exc)
        return 0.0
    return float((most or {}).get(resource, 0) or 0)


def _alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]
