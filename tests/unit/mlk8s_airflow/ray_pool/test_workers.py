"""Joining pool members (pods, local nodes) with what Ray says about its nodes."""

from __future__ import annotations

from mlk8s.ray_gcs import RayNodeActivity, RayState
from mlk8s_airflow.actuators.base import Member
from mlk8s_airflow.ray_pool.workers import join_workers


def node(node_id: str, busy: bool, instance_id: str = "", ip: str = "", idle_ms: int = 0) -> RayNodeActivity:
    return RayNodeActivity(node_id, instance_id, "cpu", "RUNNING" if busy else "IDLE", busy, idle_ms, ip)


def test_members_are_found_by_node_id_instance_id_or_a_unique_ip() -> None:
    ray = RayState(
        demand=(),
        nodes=(
            node("n1", busy=True, instance_id="pod-a", ip="10.0.0.1"),
            node("n2", busy=False, instance_id="", ip="10.0.0.2", idle_ms=30_000),
            node("n3", busy=False, ip="10.0.0.9"),
            node("n4", busy=True, ip="10.0.0.9"),
        ),
    )
    members = [
        Member("pod-a", "cpu", 1.0, ray_keys=("pod-a", "10.0.0.1")),
        Member("pod-b", "cpu", 2.0, ray_keys=("pod-b", "10.0.0.2")),  # found by its (unique) IP
        Member("pod-c", "cpu", 3.0, pending=True, ray_keys=("pod-c",)),
        Member("pod-d", "cpu", 4.0, ray_keys=("pod-d", "10.0.0.7")),  # running pod, not in Ray yet
        Member("pod-e", "cpu", 5.0, ray_keys=("pod-e", "10.0.0.9")),  # shared IP: cannot tell which node
    ]
    workers = {w.id: w for w in join_workers(members, ray, now=100.0)}
    assert workers["pod-a"].busy and not workers["pod-a"].pending
    assert not workers["pod-b"].busy and workers["pod-b"].idle_since == 70.0
    assert workers["pod-c"].pending
    assert workers["pod-d"].pending and not workers["pod-d"].busy
    assert workers["pod-e"].pending


def test_without_ray_every_running_member_counts_as_busy() -> None:
    members = [Member("a", "cpu", 1.0), Member("b", "cpu", 2.0, pending=True)]
    workers = join_workers(members, None, now=5.0)
    assert [(w.id, w.busy, w.pending) for w in workers] == [("a", True, False), ("b", False, True)]


def test_free_resources_reach_the_policy() -> None:
    free = RayNodeActivity("n1", "pod-a", "cpu", "RUNNING", True, 0, "10.0.0.1", 1.5, 0.0, 2e9)
    (worker,) = join_workers([Member("pod-a", "cpu", 0.0, ray_keys=("pod-a",))], RayState((), (free,)), now=1.0)
    assert (worker.free_cpus, worker.free_gpus, worker.free_memory) == (1.5, 0.0, 2e9)
