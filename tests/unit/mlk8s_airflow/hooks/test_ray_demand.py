"""Parsing the GCS's autoscaler state (real protobuf messages, as Ray sends them) into policy inputs."""

from __future__ import annotations

import pytest

from mlk8s.scaling import ResourceDemand
from mlk8s_airflow.hooks.ray_demand import GROUP_LABEL, RayDemandReader, parse_cluster_state


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
    assert (nodes["bb"].free_cpus, nodes["bb"].free_gpus, nodes["bb"].free_memory) == (1.5, 0.0, 1e9)
    assert not nodes["cc"].busy and nodes["cc"].idle_ms == 7000 and nodes["cc"].instance_id == "pool-gpu-x"
    assert nodes["ee"].busy  # draining: on its way out, never picked for removal again


def test_reader_needs_an_explicit_address() -> None:
    with pytest.raises(ValueError, match="never rely on auto-detection"):
        RayDemandReader("auto")
