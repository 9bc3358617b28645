"""Read what the Ray cluster itself says: resource requests it cannot place yet, and which nodes are busy.

The source is the GCS's autoscaler state (``get_cluster_resource_state``), the same view KubeRay's in-tree
autoscaler v2 uses, so it needs only the GCS address (``<cluster>-head-svc:6379`` on KubeRay) and the
cluster's auth token, not a driver connection. A node belongs to a worker group by its label
(``group_label``, set by our local actuator) or, on KubeRay, by ``ray_node_type_name`` (KubeRay sets
``RAY_NODE_TYPE_NAME`` to the group name and ``RAY_CLOUD_INSTANCE_ID`` to the pod name). Nodes of no
group (the head) are left out: the sensor never sizes or removes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlk8s import compat
from mlk8s.scaling import ResourceDemand

#: The label our local actuator puts on the Ray nodes it starts.
GROUP_LABEL = "mlk8s.io/worker-group"

# autoscaler_pb2.NodeStatus values (kept here so parsing needs no Ray import at module level).
_RUNNING, _DEAD, _IDLE, _DRAINING = 1, 2, 3, 4
_STATUS_NAMES = {0: "UNSPECIFIED", 1: "RUNNING", 2: "DEAD", 3: "IDLE", 4: "DRAINING"}


@dataclass(frozen=True)
class RayNodeActivity:
    """One alive Ray node of a worker group. ``busy`` is anything but IDLE: running work, or draining.

    ``free_*`` are Ray's available resources on the node: room that queued work can use before the pool
    needs a new worker.
    """

    node_id: str
    instance_id: str
    group: str
    status: str
    busy: bool
    idle_ms: int
    ip: str
    free_cpus: float = 0.0
    free_gpus: float = 0.0
    free_memory: float = 0.0


@dataclass(frozen=True)
class RayState:
    demand: tuple[ResourceDemand, ...]
    nodes: tuple[RayNodeActivity, ...]

    @property
    def pending_requests(self) -> int:
        return sum(d.count for d in self.demand)


def _demand_of(bundle: Mapping[str, float], count: int) -> ResourceDemand | None:
    cpus = float(bundle.get("CPU", 0.0))
    gpus = float(bundle.get("GPU", 0.0))
    memory = float(bundle.get("memory", 0.0))
    if count <= 0 or (cpus <= 0 and gpus <= 0 and memory <= 0):
        return None  # asks only for custom resources the policy does not size for
    return ResourceDemand(cpus=cpus, gpus=gpus, memory=memory, count=count)


def parse_cluster_state(state: Any, group_label: str = GROUP_LABEL) -> RayState:
    """Turn an ``autoscaler_pb2.ClusterResourceState`` into policy inputs; pure, so a test can feed a proto."""
    shapes: Counter[tuple[float, float, float]] = Counter()
    for by_count in state.pending_resource_requests:
        bundle = dict(by_count.request.resources_bundle)
        shapes[(bundle.get("CPU", 0.0), bundle.get("GPU", 0.0), bundle.get("memory", 0.0))] += by_count.count
    for gang in state.pending_gang_resource_requests:
        for request in gang.requests:
            bundle = dict(request.resources_bundle)
            shapes[(bundle.get("CPU", 0.0), bundle.get("GPU", 0.0), bundle.get("memory", 0.0))] += 1
    demand = []
    for (cpus, gpus, memory), count in sorted(shapes.items()):
        item = _demand_of({"CPU": cpus, "GPU": gpus, "memory": memory}, count)
        if item is not None:
            demand.append(item)

    nodes = []
    for node in state.node_states:
        if node.status == _DEAD:
            continue
        labels = dict(node.labels)
        group = labels.get(group_label) or node.ray_node_type_name
        if not group:
            continue
        node_id = node.node_id.hex() if isinstance(node.node_id, bytes) else str(node.node_id)
        free = dict(node.available_resources)
        nodes.append(
            RayNodeActivity(
                node_id=node_id,
                instance_id=node.instance_id or "",
                group=group,
                status=_STATUS_NAMES.get(node.status, str(node.status)),
                busy=node.status != _IDLE,
                idle_ms=int(node.idle_duration_ms) if node.status == _IDLE else 0,
                ip=node.node_ip_address,
                free_cpus=float(free.get("CPU", 0.0)),
                free_gpus=float(free.get("GPU", 0.0)),
                free_memory=float(free.get("memory", 0.0)),
            )
        )
    return RayState(demand=tuple(demand), nodes=tuple(sorted(nodes, key=lambda n: n.node_id)))


class RayDemandReader:
    """Reads :class:`RayState` from a cluster's GCS at an explicit address (never "whatever is running").

    The caller's process must hold the cluster's auth token (``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``
    or ``RAY_AUTH_TOKEN_PATH``), as every Ray client does.
    """

    def __init__(self, gcs_address: str, *, group_label: str = GROUP_LABEL, timeout_s: float = 10.0) -> None:
        if not gcs_address or ":" not in gcs_address:
            raise ValueError(
                f"ray_address={gcs_address!r}: pass the GCS address as host:port "
                "(e.g. raycluster-head-svc.ray:6379), never rely on auto-detection"
            )
        self.gcs_address = gcs_address
        self.group_label = group_label
        self.timeout_s = timeout_s

    def read(self) -> RayState:
        client = compat.get("ray.GcsClient")(address=self.gcs_address)
        state = compat.get("ray.get_cluster_resource_state")(client)
        return parse_cluster_state(state, self.group_label)

    def drain_idle(self, node_ids: Iterable[str], reason: str) -> dict[str, str | None]:
        """Ask the GCS to drain nodes *only if idle*; returns node id -> None (accepted) or why rejected.

        The GCS checks idleness itself at the moment of the request (DRAIN_NODE_REASON_IDLE_TERMINATION), so
        a node that picked up work since we looked is refused rather than killed.
        """
        autoscaler_pb2 = compat.get("ray.autoscaler_pb2")
        client = compat.get("ray.GcsClient")(address=self.gcs_address)
        result: dict[str, str | None] = {}
        for node_id in node_ids:
            accepted, message = client.drain_node(
                node_id,
                autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_IDLE_TERMINATION"),
                reason,
                0,
            )
            result[node_id] = None if accepted else (message or "rejected")
        return result
