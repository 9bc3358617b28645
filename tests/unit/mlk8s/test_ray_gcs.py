"""The GCS client: parsing the autoscaler state (real protobuf messages, as Ray sends them) into policy inputs,
and the token handed to the GCS explicitly as gRPC metadata, checked by a gRPC server that plays the GCS."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

from mlk8s.net import free_port
from mlk8s.ray_gcs import GROUP_LABEL, GcsClient, GcsError, check_address, parse_cluster_state
from mlk8s.scaling import ResourceDemand


def test_demand_by_shape_and_node_activity_by_group() -> None:
    from ray.core.generated import autoscaler_pb2 as pb

    def request(count: int, **bundle: float) -> pb.ResourceRequestByCount:
        return pb.ResourceRequestByCount(request=pb.ResourceRequest(resources_bundle=bundle), count=count)

    state = pb.ClusterResourceState(
        node_states=[
            pb.NodeState(node_id=bytes.fromhex("aa" * 28), status=pb.IDLE, idle_duration_ms=5000),  # head
            pb.NodeState(
                node_id=bytes.fromhex("bb" * 28),
                status=pb.RUNNING,
                labels={GROUP_LABEL: "cpu"},
                available_resources={"CPU": 1.5, "memory": 1e9},
                node_ip_address="10.0.0.2",
            ),
            pb.NodeState(
                node_id=bytes.fromhex("cc" * 28),
                status=pb.IDLE,
                idle_duration_ms=7000,
                instance_id="pool-gpu-x",
                ray_node_type_name="gpu",  # KubeRay names the group this way
            ),
            pb.NodeState(node_id=bytes.fromhex("dd" * 28), status=pb.DEAD, labels={GROUP_LABEL: "cpu"}),
            pb.NodeState(node_id=bytes.fromhex("ee" * 28), status=pb.DRAINING, labels={GROUP_LABEL: "cpu"}),
        ],
        pending_resource_requests=[
            request(3, CPU=1.0),
            request(1, CPU=1.0, GPU=1.0),
            request(2, custom_thing=1.0),  # nothing the policy sizes for
        ],
        pending_gang_resource_requests=[
            pb.GangResourceRequest(requests=[pb.ResourceRequest(resources_bundle={"CPU": 1.0}) for _ in range(2)])
        ],
    )
    parsed = parse_cluster_state(state)
    assert parsed.demand == (ResourceDemand(cpus=1.0, count=5), ResourceDemand(cpus=1.0, gpus=1.0, count=1))
    assert parsed.pending_requests == 6
    nodes = {n.node_id[:2]: n for n in parsed.nodes}
    assert sorted(nodes) == ["bb", "cc", "ee"]
    assert nodes["bb"].busy and nodes["bb"].group == "cpu" and nodes["bb"].ip == "10.0.0.2"
    assert nodes["bb"].status == "RUNNING"
    assert (nodes["bb"].free_cpus, nodes["bb"].free_gpus, nodes["bb"].free_memory) == (1.5, 0.0, 1e9)
    assert not nodes["cc"].busy and nodes["cc"].idle_ms == 7000 and nodes["cc"].instance_id == "pool-gpu-x"
    assert nodes["ee"].busy and nodes["ee"].status == "DRAINING"  # on its way out, never picked for removal again


@pytest.mark.parametrize("address", ["auto", "", "head", "head:port", ":6379"])
def test_an_address_must_be_explicit_host_and_port(address: str) -> None:
    with pytest.raises(ValueError, match="host:port.*never rely on auto-detection"):
        check_address(address)


class FakeGcs:
    """A gRPC server playing the GCS's node and autoscaler services, recording the metadata it receives."""

    def __init__(self, token: str) -> None:
        import grpc
        from ray.core.generated import (
            autoscaler_pb2,
            autoscaler_pb2_grpc,
            gcs_pb2,
            gcs_service_pb2,
            gcs_service_pb2_grpc,
        )

        self.metadata: list[dict[str, str]] = []
        self.drained: list[tuple[bytes, int]] = []
        fake = self

        def check(context: Any) -> None:
            md = dict(context.invocation_metadata())
            fake.metadata.append(md)
            if md.get("authorization") != f"Bearer {token}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken")

        class Nodes(gcs_service_pb2_grpc.NodeInfoGcsServiceServicer):  # type: ignore[misc]
            def GetAllNodeInfo(self, request: Any, context: Any) -> Any:
                check(context)
                alive, dead = gcs_pb2.GcsNodeInfo.GcsNodeState.ALIVE, gcs_pb2.GcsNodeInfo.GcsNodeState.DEAD
                return gcs_service_pb2.GetAllNodeInfoReply(
                    node_info_list=[
                        gcs_pb2.GcsNodeInfo(
                            node_id=b"\x01" * 28,
                            node_name="head",
                            node_manager_address="10.0.0.1",
                            is_head_node=True,
                            state=alive,
                            resources_total={"CPU": 2.0},
                        ),
                        gcs_pb2.GcsNodeInfo(node_id=b"\x02" * 28, node_name="gone", state=dead),
                    ]
                )

        class Autoscaler(autoscaler_pb2_grpc.AutoscalerStateServiceServicer):  # type: ignore[misc]
            def DrainNode(self, request: Any, context: Any) -> Any:
                check(context)
                fake.drained.append((request.node_id, request.reason))
                busy = request.node_id == b"\x03" * 28
                return autoscaler_pb2.DrainNodeReply(
                    is_accepted=not busy, rejection_reason_message="node is busy" if busy else ""
                )

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        gcs_service_pb2_grpc.add_NodeInfoGcsServiceServicer_to_server(Nodes(), self.server)
        autoscaler_pb2_grpc.add_AutoscalerStateServiceServicer_to_server(Autoscaler(), self.server)
        self.address = f"127.0.0.1:{free_port()}"
        self.server.add_insecure_port(self.address)
        self.server.start()


@pytest.fixture
def fake_gcs() -> Iterator[FakeGcs]:
    gcs = FakeGcs(token="right-token")
    try:
        yield gcs
    finally:
        gcs.server.stop(grace=None)


def test_the_token_travels_as_grpc_metadata_never_through_the_environment(
    fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "the-environment-token")  # must not be what the client sends
    with GcsClient(fake_gcs.address, token="right-token") as gcs:
        (head,) = gcs.nodes()
    assert fake_gcs.metadata[-1]["authorization"] == "Bearer right-token"
    assert (head.node_id, head.name, head.ip, head.head, head.resources) == (
        "01" * 28,
        "head",
        "10.0.0.1",
        True,
        {"CPU": 2.0},
    )
    assert "right-token" not in repr(GcsClient(fake_gcs.address, token="right-token"))


def test_a_wrong_or_missing_token_is_a_clear_error(fake_gcs: FakeGcs) -> None:
    for token in ("wrong", None):
        with GcsClient(fake_gcs.address, token=token) as gcs, pytest.raises(GcsError, match="UNAUTHENTICATED.*token"):
            gcs.nodes()


def test_drain_asks_for_idle_termination_and_reports_refusals(fake_gcs: FakeGcs) -> None:
    from ray.core.generated import autoscaler_pb2

    with GcsClient(fake_gcs.address, token="right-token") as gcs:
        result = gcs.drain_idle(["04" * 28, "03" * 28], "queue drained")
    assert result == {"04" * 28: None, "03" * 28: "node is busy"}
    assert {reason for _, reason in fake_gcs.drained} == {
        autoscaler_pb2.DrainNodeReason.DRAIN_NODE_REASON_IDLE_TERMINATION
    }


def test_an_unreachable_gcs_fails_within_the_call_deadline() -> None:
    with GcsClient(f"127.0.0.1:{free_port()}", token="t", timeout_s=1.0) as gcs:
        with pytest.raises(GcsError, match=r"127\.0\.0\.1:\d+: GetAllNodeInfo failed: (UNAVAILABLE|DEADLINE_EXCEEDED)"):
            gcs.nodes()
