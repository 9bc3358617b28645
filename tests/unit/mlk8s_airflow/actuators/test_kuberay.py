"""The KubeRay actuator through the real kubernetes client against the mock API server.

The server validates every RayCluster write against KubeRay's CRD schema (../shared/schemas) and enforces
resourceVersion, so a patch that is malformed or stale fails here as it would on a real cluster.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mlk8s.scaling import Decision, Worker
from mlk8s_airflow.actuators.base import ActuatorError, ActuatorMode
from mlk8s_airflow.actuators.kuberay import (
    DECISION_ANNOTATION,
    KubeRayActuator,
    apply_merge_patch,
    members_from_pods,
    plan_patch,
)
from tests.k8s_api import MockKubeServer
from tests.k8s_api.schemas import validate_object

NS = "mlk8s"
NAME = "pool"


def _template(image: str = "rayproject/ray:2.60.0") -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "ray", "image": image}]}}


def raycluster(in_tree: bool, replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "enableInTreeAutoscaling": in_tree,
            "headGroupSpec": {"rayStartParams": {}, "template": _template()},
            "workerGroupSpecs": [
                {
                    "groupName": "cpu",
                    "replicas": replicas,
                    "minReplicas": 0,
                    "maxReplicas": 8,
                    "rayStartParams": {},
                    "template": _template(),
                },
                {
                    "groupName": "gpu",
                    "replicas": 0,
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "rayStartParams": {},
                    "template": _template(),
                },
            ],
        },
    }


def pod(name: str, group: str = "cpu", phase: str = "Running", ready: bool = True, ip: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"ray.io/cluster": NAME, "ray.io/group": group, "ray.io/node-type": "worker"},
        },
        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.60.0"}]},
        "status": {
            "phase": phase,
            "podIP": ip or f"10.0.0.{len(name)}",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def setup_cluster(server: MockKubeServer, api_client: Any, in_tree: bool) -> None:
    from kubernetes import client

    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "ray.io", "v1", NS, "rayclusters", raycluster(in_tree)
    )
    for name in ("pool-cpu-a", "pool-cpu-b", "pool-cpu-c"):
        server.put_object(pod(name))


def actuator(api_client: Any, mode: ActuatorMode) -> KubeRayActuator:
    return KubeRayActuator(api_client, name=NAME, namespace=NS, mode=mode, attempts=4, sleep=lambda _: None)


WORKERS = [
    Worker(id="pool-cpu-a", group="cpu", busy=True, started_at=0.0),
    Worker(id="pool-cpu-b", group="cpu", busy=False, started_at=0.0, idle_since=10.0),
    Worker(id="pool-cpu-c", group="cpu", busy=False, started_at=0.0, idle_since=20.0),
]
SHRINK = [
    Decision("cpu", current=3, target=2, remove=("pool-cpu-b",), reason="idle"),
    Decision("gpu", current=0, target=0, remove=(), reason="hold"),
]


def stored(server: MockKubeServer) -> dict[str, Any]:
    obj = server.get("rayclusters", NAME, NS, group="ray.io")
    assert obj is not None
    return obj


def test_own_mode_deletes_exactly_the_idle_pod_and_records_the_decision(
    k8s_server: MockKubeServer, k8s_api_client: Any
) -> None:
    setup_cluster(k8s_server, k8s_api_client, in_tree=False)
    act = actuator(k8s_api_client, ActuatorMode.KUBERAY_OWN)
    assert [m.id for m in act.members()] == ["pool-cpu-a", "pool-cpu-b", "pool-cpu-c"]

    results = act.apply(SHRINK, WORKERS, "d-1")

    obj = stored(k8s_server)
    cpu = obj["spec"]["workerGroupSpecs"][0]
    assert cpu["replicas"] == 2
    assert cpu["scaleStrategy"]["workersToDelete"] == ["pool-cpu-b"]
    assert obj["spec"]["workerGroupSpecs"][1]["replicas"] == 0
    assert obj["metadata"]["annotations"][DECISION_ANNOTATION] == "d-1"
    assert [r.applied for r in results] == [True, False]
    validate_object(obj, k8s_server.resource_type("rayclusters", "ray.io").custom)
    # The pod on its way out no longer counts as a member (else the next cycle would remove another one).
    assert [m.id for m in act.members()] == ["pool-cpu-a", "pool-cpu-c"]


def test_same_decision_is_not_applied_twice(k8s_server: MockKubeServer, k8s_api_client: Any) -> None:
    setup_cluster(k8s_server, k8s_api_client, in_tree=False)
    act = actuator(k8s_api_client, ActuatorMode.KUBERAY_OWN)
    act.apply(SHRINK, WORKERS, "d-1")
    rv = stored(k8s_server)["metadata"]["resourceVersion"]
    again = act.apply(SHRINK, WORKERS, "d-1")
    assert all(not r.applied and "already applied" in r.note for r in again)
    assert stored(k8s_server)["metadata"]["resourceVersion"] == rv


def test_busy_worker_is_never_listed_for_deletion(k8s_server: MockKubeServer, k8s_api_client: Any) -> None:
    setup_cluster(k8s_server, k8s_api_client, in_tree=False)
    bad = [Decision("cpu", current=3, target=1, remove=("pool-cpu-a", "pool-cpu-c"), reason="buggy policy")]
    results = actuator(k8s_api_client, ActuatorMode.KUBERAY_OWN).apply(bad, WORKERS, "d-2")
    cpu = stored(k8s_server)["spec"]["workerGroupSpecs"][0]
    assert cpu["scaleStrategy"]["workersToDelete"] == ["pool-cpu-c"]
    assert cpu["replicas"] == 2  # shrinks only by the idle pod it may delete
    assert "refused to delete busy ['pool-cpu-a']" in results[0].note


def test_conflict_with_another_writer_is_retried_on_a_fresh_read(
    k8s_server: MockKubeServer, k8s_api_client: Any
) -> None:
    from kubernetes import client

    setup_cluster(k8s_server, k8s_api_client, in_tree=False)
    act = actuator(k8s_api_client, ActuatorMode.KUBERAY_OWN)
    other = client.CustomObjectsApi(k8s_api_client)
    reads = []
    real_read = act.read_cluster

    def read_then_someone_writes() -> dict[str, Any]:
        obj = real_read()
        reads.append(obj["metadata"]["resourceVersion"])
        if len(reads) == 1:  # KubeRay (or a person) writes between our read and our patch
            other.patch_namespaced_custom_object(
                "ray.io", "v1", NS, "rayclusters", NAME, {"metadata": {"labels": {"touched": "yes"}}}
            )
        return obj

    act.read_cluster = read_then_someone_writes  # type: ignore[method-assign]
    act.apply(SHRINK, WORKERS, "d-3")

    conflicts = [r for r in k8s_server.requests if r.method == "PATCH" and r.status == 409]
    assert len(conflicts) == 1
    assert len(reads) == 2 and reads[0] != reads[1]
    obj = stored(k8s_server)
    assert obj["metadata"]["labels"]["touched"] == "yes"  # the other writer's change survives
    assert obj["spec"]["workerGroupSpecs"][0]["replicas"] == 2


def test_api_errors_are_retried_with_backoff(k8s_server: MockKubeServer, k8s_api_client: Any) -> None:
    setup_cluster(k8s_server, k8s_api_client, in_tree=False)
    k8s_server.inject_fault(503, method="PATCH", path="rayclusters", times=2)
    sleeps: list[float] = []
    act = KubeRayActuator(k8s_api_client, name=NAME, namespace=NS, mode=ActuatorMode.KUBERAY_OWN, sleep=sleeps.append)
    act.apply(SHRINK, WORKERS, "d-4")
    assert sleeps == [0.5, 1.0]
    assert stored(k8s_server)["spec"]["workerGroupSpecs"][0]["replicas"] == 2


def test_persistent_error_leaves_the_cluster_as_it_was(k8s_server: MockKubeServer, k8s_api_client: Any) -> None:
    setup_cluster(k8s_server, k8s_api_client, in_tree=False)
    before = stored(k8s_server)
    k8s_server.inject_fault(500, method="PATCH", path="rayclusters", times=10)
    with pytest.raises(ActuatorError, match="patch on RayCluster mlk8s/pool failed"):
        actuator(k8s_api_client, ActuatorMode.KUBERAY_OWN).apply(SHRINK, WORKERS, "d-5")
    assert stored(k8s_server) == before


def test_cooperate_mode_moves_only_min_replicas(k8s_server: MockKubeServer, k8s_api_client: Any) -> None:
    setup_cluster(k8s_server, k8s_api_client, in_tree=True)
    grow = [Decision("cpu", current=3, target=6, remove=(), reason="backlog")]
    actuator(k8s_api_client, ActuatorMode.KUBERAY_COOPERATE).apply(grow, WORKERS, "d-6")
    cpu = stored(k8s_server)["spec"]["workerGroupSpecs"][0]
    assert cpu["minReplicas"] == 6
    assert cpu["replicas"] == 3  # the in-tree autoscaler's field, untouched
    # An empty scaleStrategy, for the autoscaler's JSON patch to replace (it fails where there is none).
    assert [g["scaleStrategy"] for g in stored(k8s_server)["spec"]["workerGroupSpecs"]] == [{}, {}]

    shrink = [Decision("cpu", current=6, target=2, remove=("pool-cpu-b",), reason="drained")]
    actuator(k8s_api_client, ActuatorMode.KUBERAY_COOPERATE).apply(shrink, WORKERS, "d-7")
    cpu = stored(k8s_server)["spec"]["workerGroupSpecs"][0]
    assert cpu["minReplicas"] == 2
    assert cpu["scaleStrategy"] == {}  # the autoscaler picks which idle pods go


def test_cooperate_mode_keeps_the_autoscalers_workers_to_delete() -> None:
    cluster = raycluster(True)
    cluster["spec"]["workerGroupSpecs"][0]["scaleStrategy"] = {"workersToDelete": ["pool-cpu-c"]}
    grow = [Decision("cpu", current=3, target=4, remove=(), reason="backlog")]
    patch, _ = plan_patch(cluster, grow, WORKERS, ActuatorMode.KUBERAY_COOPERATE, "d")
    assert patch is not None
    strategies = [g["scaleStrategy"] for g in patch["spec"]["workerGroupSpecs"]]
    assert strategies == [{"workersToDelete": ["pool-cpu-c"]}, {}]


@pytest.mark.parametrize(
    ("in_tree", "mode", "fix"),
    [(True, ActuatorMode.KUBERAY_OWN, "kuberay-cooperate"), (False, ActuatorMode.KUBERAY_COOPERATE, "kuberay-own")],
)
def test_mode_that_would_fight_the_cluster_is_refused_before_writing(
    k8s_server: MockKubeServer, k8s_api_client: Any, in_tree: bool, mode: ActuatorMode, fix: str
) -> None:
    setup_cluster(k8s_server, k8s_api_client, in_tree=in_tree)
    with pytest.raises(ActuatorError, match=fix):
        actuator(k8s_api_client, mode).members()
    assert not [r for r in k8s_server.requests if r.method == "PATCH"]


def test_deletes_only_as_many_pods_as_the_cluster_minimum_lets_the_group_shrink() -> None:
    cluster = raycluster(False)
    cluster["spec"]["workerGroupSpecs"][0]["minReplicas"] = 2
    shrink = [Decision("cpu", current=3, target=0, remove=("pool-cpu-b", "pool-cpu-c", "pool-cpu-a"), reason="x")]
    patch, results = plan_patch(cluster, shrink, WORKERS, ActuatorMode.KUBERAY_OWN, "d")
    assert patch is not None
    cpu = patch["spec"]["workerGroupSpecs"][0]
    assert cpu["replicas"] == 2
    assert cpu["scaleStrategy"]["workersToDelete"] == ["pool-cpu-b"]
    assert "refused to delete busy ['pool-cpu-a']" in results[0].note


def test_unknown_group_names_the_groups_the_cluster_has() -> None:
    with pytest.raises(ActuatorError, match=r"no workerGroupSpec named 'tpu' \(it has \['cpu', 'gpu'\]\)"):
        plan_patch(raycluster(False), [Decision("tpu", 0, 1, (), "x")], [], ActuatorMode.KUBERAY_OWN, "d")


@pytest.mark.parametrize("mode", [ActuatorMode.KUBERAY_OWN, ActuatorMode.KUBERAY_COOPERATE])
def test_planned_patches_are_valid_against_the_crd(k8s_server: MockKubeServer, mode: ActuatorMode) -> None:
    crd = k8s_server.resource_type("rayclusters", "ray.io").custom
    cluster = raycluster(mode is ActuatorMode.KUBERAY_COOPERATE)
    cluster["metadata"]["resourceVersion"] = "7"
    decisions = [
        Decision("cpu", current=3, target=1, remove=("pool-cpu-b", "pool-cpu-c"), reason="idle"),
        Decision("gpu", current=0, target=2, remove=(), reason="gpu work"),
    ]
    patch, _ = plan_patch(cluster, decisions, WORKERS, mode, "d-8")
    assert patch is not None and patch["metadata"]["resourceVersion"] == "7"
    after = apply_merge_patch(copy.deepcopy(cluster), patch)
    validate_object(after, crd)


def test_members_from_pods_marks_pending_and_skips_leaving_pods() -> None:
    cluster = raycluster(False)
    cluster["spec"]["workerGroupSpecs"][0]["scaleStrategy"] = {"workersToDelete": ["pool-cpu-c"]}
    terminating = pod("pool-cpu-d")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    head = pod("pool-head")
    head["metadata"]["labels"]["ray.io/node-type"] = "head"
    pods = [pod("pool-cpu-a"), pod("pool-cpu-b", phase="Pending", ready=False), pod("pool-cpu-c"), terminating, head]
    members = members_from_pods(pods, cluster)
    assert [(m.id, m.pending) for m in members] == [("pool-cpu-a", False), ("pool-cpu-b", True)]
    assert members[0].ray_keys == ("pool-cpu-a", "10.0.0.10")
