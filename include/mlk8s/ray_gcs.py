"""The one client of a Ray cluster's GCS: which nodes are alive, what demand is pending, and draining a node.

Everything that asks the GCS (the local Ray cluster, the driver's connection check, the Ray pool loop, the local
actuator) goes through :class:`GcsClient`, so node state is read and the proto enums are interpreted in one
place. It speaks gRPC to the GCS port directly (the public services Ray's own autoscaler v2 uses:
``NodeInfoGcsService.GetAllNodeInfo``, ``AutoscalerStateService.GetClusterResourceState`` and ``DrainNode``)
instead of ``ray._raylet.GcsClient``, because that one reads the auth token from the process environment: in
the triggerer many triggers share one process, so the token is handed to this client explicitly and sent as
gRPC metadata ``authorization: Bearer <token>``, as Ray's own client interceptor does. No driver connection
(``ray.init``) is needed, only the GCS address.

A node belongs to a worker group by its label (``group_label``, set on the nodes our local Ray cluster
starts) or, on KubeRay, by ``ray_node_type_name`` (KubeRay sets ``RAY_NODE_TYPE_NAME`` to the group name and
``RAY_CLOUD_INSTANCE_ID`` to the pod name). Nodes of no group (the head) are left out of :class:`RayState`:
the pool loop never sizes or removes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlk8s import compat
from mlk8s.scaling import ResourceDemand

#: The label a Ray node carries naming its worker group (our local Ray cluster sets it on the nodes it starts).
GROUP_LABEL = "mlk8s.io/worker-group"
#: gRPC metadata key and prefix Ray's GCS checks the token against (Ray's authentication_constants).
AUTHORIZATION_METADATA = "authorization"
BEARER_PREFIX = "Bearer "
#: Seconds one GCS call may take unless the caller says otherwise.
DEFAULT_CALL_TIMEOUT_S = 10.0
#: Ray replies with large protos (one entry per node and resource shape); gRPC's default cap is 4 MiB.
MAX_MESSAGE_BYTES = 256 * 1024**2


class GcsError(RuntimeError):
    """The GCS could not be reached or refused the call; the message names the address and why."""


@dataclass(frozen=True)
class GcsNode:
    """An alive node as the GCS reports it."""

    node_id: str
    name: str
    ip: str
    resources: dict[str, float]
    labels: dict[str, str]
    head: bool


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
    """What Ray says about the pool: resource requests it cannot place yet, and each group node's activity."""

    demand: tuple[ResourceDemand, ...]
    nodes: tuple[RayNodeActivity, ...] = field(default_factory=tuple)

    @property
    def pending_requests(self) -> int:
        return sum(d.count for d in self.demand)


def _bundle_shape(bundle: Mapping[str, float]) -> tuple[float, float, float]:
    return float(bundle.get("CPU", 0.0)), float(bundle.get("GPU", 0.0)), float(bundle.get("memory", 0.0))


def _pending_demand(state: Any) -> tuple[ResourceDemand, ...]:
    shapes: Counter[tuple[float, float, float]] = Counter()
    for by_count in state.pending_resource_requests:
        shapes[_bundle_shape(dict(by_count.request.resources_bundle))] += int(by_count.count)
    for gang in state.pending_gang_resource_requests:
        for request in gang.requests:
            shapes[_bundle_shape(dict(request.resources_bundle))] += 1
    demand = []
    for (cpus, gpus, memory), count in sorted(shapes.items()):
        # A request only for custom resources is nothing the policy sizes workers for.
        if count > 0 and (cpus > 0 or gpus > 0 or memory > 0):
            demand.append(ResourceDemand(cpus=cpus, gpus=gpus, memory=memory, count=count))
    return tuple(demand)


def parse_cluster_state(state: Any, group_label: str = GROUP_LABEL) -> RayState:
    """Turn an ``autoscaler_pb2.ClusterResourceState`` into policy inputs; pure, so a test can feed a proto."""
    status = compat.get("ray.autoscaler_pb2").NodeStatus
    nodes = []
    for node in state.node_states:
        if node.status == status.DEAD:
            continue
        group = dict(node.labels).get(group_label) or node.ray_node_type_name
        if not group:
            continue
        idle = node.status == status.IDLE
        free = dict(node.available_resources)
        nodes.append(
            RayNodeActivity(
                node_id=bytes(node.node_id).hex(),
                instance_id=node.instance_id or "",
                group=group,
                status=status.Name(node.status),
                busy=not idle,
                idle_ms=int(node.idle_duration_ms) if idle else 0,
                ip=node.node_ip_address,
                free_cpus=float(free.get("CPU", 0.0)),
                free_gpus=float(free.get("GPU", 0.0)),
                free_memory=float(free.get("memory", 0.0)),
            )
        )
    return RayState(demand=_pending_demand(state), nodes=tuple(sorted(nodes, key=lambda n: n.node_id)))


def check_address(address: str, what: str = "ray_address") -> str:
    """``host:port`` or a clear error: a GCS is always named explicitly, never auto-detected."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"{what}={address!r}: pass the Ray GCS address as host:port "
            "(KubeRay: <cluster>-head-svc.<namespace>:6379), never rely on auto-detection"
        )
    return address


class GcsClient:
    """A gRPC client of one GCS at an explicit address, authenticated with an explicit token (or none).

    Cheap to create; the channel opens lazily and :meth:`close` ends it. Every call has a deadline, so an
    unreachable or hung GCS costs at most ``timeout_s`` per call.
    """

    def __init__(self, address: str, *, token: str | None, timeout_s: float = DEFAULT_CALL_TIMEOUT_S) -> None:
        self.address = check_address(address)
        self.timeout_s = timeout_s
        self._metadata: tuple[tuple[str, str], ...] = (
            ((AUTHORIZATION_METADATA, BEARER_PREFIX + token),) if token else ()
        )
        self._channel: Any = None

    def __repr__(self) -> str:  # never print the token
        return f"GcsClient(address={self.address!r}, token={'set' if self._metadata else 'none'})"

    def __enter__(self) -> GcsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _call(self, stub_name: str, method: str, request: Any, timeout_s: float | None) -> Any:
        import grpc

        if self._channel is None:
            options = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
            self._channel = grpc.insecure_channel(self.address, options=options)
        stub = compat.get(stub_name)(self._channel)
        try:
            return getattr(stub, method)(request, metadata=self._metadata, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            hint = ""
            if code == "UNAUTHENTICATED":
                hint = "; the Ray auth token is missing or wrong (RAY_AUTH_TOKEN, or the connection's password)"
            raise GcsError(f"Ray GCS at {self.address}: {method} failed: {code} {details}{hint}") from exc

    def nodes(self, *, timeout_s: float | None = None) -> list[GcsNode]:
        """Alive nodes with their total resources and labels."""
        gcs_service_pb2 = compat.get("ray.gcs_service_pb2")
        alive = compat.get("ray.gcs_pb2").GcsNodeInfo.GcsNodeState.ALIVE
        reply = self._call(
            "ray.NodeInfoGcsServiceStub", "GetAllNodeInfo", gcs_service_pb2.GetAllNodeInfoRequest(), timeout_s
        )
        return [
            GcsNode(
                node_id=bytes(info.node_id).hex(),
                name=info.node_name,
                ip=info.node_manager_address,
                resources=dict(info.resources_total),
                labels=dict(info.labels),
                head=bool(info.is_head_node),
            )
            for info in reply.node_info_list
            if info.state == alive
        ]

    def cluster_state(self, group_label: str = GROUP_LABEL, *, timeout_s: float | None = None) -> RayState:
        """Pending demand by shape and the activity of each worker-group node (autoscaler v2's view)."""
        autoscaler_pb2 = compat.get("ray.autoscaler_pb2")
        request = autoscaler_pb2.GetClusterResourceStateRequest(last_seen_cluster_resource_state_version=0)
        reply = self._call("ray.AutoscalerStateServiceStub", "GetClusterResourceState", request, timeout_s)
        return parse_cluster_state(reply.cluster_resource_state, group_label)

    def drain_idle(self, node_ids: Iterable[str], reason: str) -> dict[str, str | None]:
        """Ask the GCS to drain nodes *only if idle*; returns node id -> None (accepted) or why it refused.

        The GCS checks idleness itself at the moment of the request (``DRAIN_NODE_REASON_IDLE_TERMINATION``), so
        a node that picked up work since we looked is refused rather than killed.
        """
        autoscaler_pb2 = compat.get("ray.autoscaler_pb2")
        result: dict[str, str | None] = {}
        for node_id in node_ids:
            request = autoscaler_pb2.DrainNodeRequest(
                node_id=bytes.fromhex(node_id),
                reason=autoscaler_pb2.DrainNodeReason.DRAIN_NODE_REASON_IDLE_TERMINATION,
                reason_message=reason[:500],
                deadline_timestamp_ms=0,
            )
            reply = self._call("ray.AutoscalerStateServiceStub", "DrainNode", request, None)
            result[node_id] = None if reply.is_accepted else (reply.rejection_reason_message or "rejected")
        return result
