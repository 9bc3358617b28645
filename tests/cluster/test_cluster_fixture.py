"""The cluster-in-a-box as set up from what we ship: objects applied, identities, a real Ray cluster on pods."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.box import ClusterInABox, wait_until


def test_the_guide_applied_what_we_ship(cluster: ClusterInABox) -> None:
    server = cluster.server
    ns = server.get("namespaces", cluster.namespace)
    assert ns is not None and ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    for name in ("mlk8s-operators", "mlk8s-triggerer"):
        assert server.get("roles", name, cluster.namespace, "rbac.authorization.k8s.io") is not None
    assert server.get("serviceaccounts", "mlk8s-pod", cluster.namespace) is not None
    for namespace in (cluster.namespace, cluster.airflow_namespace):
        assert server.get("secrets", "mlk8s-ray-auth", namespace) is not None
    assert {p["metadata"]["name"] for p in server.objects("poddisruptionbudgets", cluster.namespace, "policy")} >= {
        "mlk8s-ray-head",
        "mlk8s-ray-workers-cpu",
        "mlk8s-ray-workers-gpu",
    }
    for account in cluster.service_accounts.values():
        assert server.get("serviceaccounts", account, cluster.airflow_namespace) is not None
    head = cluster.head_pod()
    assert head["metadata"]["labels"]["ray.io/node-type"] == "head"
    assert head["spec"]["serviceAccountName"] == cluster.ray_cluster  # in-tree autoscaling is on, as shipped
    assert [c["name"] for c in head["spec"]["containers"]] == ["ray-head", "autoscaler"]


def test_component_identities_are_held_to_their_roles(cluster: ClusterInABox) -> None:
    with cluster.api_client("triggerer") as api:
        core = client.CoreV1Api(api)
        with pytest.raises(ApiException) as denied:
            core.create_namespaced_pod(cluster.namespace, {"metadata": {"name": "x"}, "spec": {"containers": []}})
        assert denied.value.status == 403
        assert "system:serviceaccount:airflow:airflow-triggerer" in denied.value.body
    with cluster.api_client("worker") as api:
        client.CustomObjectsApi(api).get_namespaced_custom_object(
            "ray.io", "v1", cluster.namespace, "rayclusters", cluster.ray_cluster
        )
        with pytest.raises(ApiException):
            client.CoreV1Api(api).list_namespaced_secret(cluster.namespace)
    usage = cluster.rbac_usage("worker")
    assert [r.describe() for r in usage.ungranted] == [f"list secrets [core] in {cluster.namespace}"]


def test_the_ray_head_runs_in_its_own_network_namespace_with_token_auth(cluster: ClusterInABox) -> None:
    head = cluster.head_pod()
    command = head["spec"]["containers"][0]["args"][0]
    assert "ray start --head" in command and "--num-cpus=0" in command and "--block" in command
    nodes = cluster.wait_for_ray_nodes(1)
    assert [n["ip"] for n in nodes if n["head"]] == [head["status"]["podIP"]]
    assert cluster.pod_ips(f"{cluster.ray_cluster}-head-svc") == [head["status"]["podIP"]]


def test_the_autoscaler_sidecar_reads_the_raycluster_in_cluster_within_kuberays_role(cluster: ClusterInABox) -> None:
    account = f"system:serviceaccount:{cluster.namespace}:{cluster.ray_cluster}"

    def calls() -> list[tuple[str, str, bool]]:
        return [(r.verb, r.combined_resource, r.allowed) for r in cluster.server.audit if r.user == account]

    seen = wait_until(lambda: ("get", "rayclusters", True) in calls() and calls(), 180, cluster.describe)
    assert all(allowed for _, _, allowed in seen), seen


def test_a_worker_pod_joins_the_heads_ray_cluster_and_leaves_by_name(cluster: ClusterInABox) -> None:
    cluster.scale_worker_group("cpu", 1)
    try:
        worker = wait_until(lambda: next(iter(cluster.ray_pods("worker", "cpu")), None), 60, lambda: cluster.describe())
        name = worker["metadata"]["name"]
        env = {e["name"]: e for e in worker["spec"]["containers"][0]["env"]}
        assert env["RAY_CLOUD_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["RAY_NODE_TYPE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['ray.io/group']"
        assert [c["name"] for c in worker["spec"]["initContainers"]] == ["wait-gcs-ready"]
        nodes = cluster.wait_for_ray_nodes(2)
        worker_ip = wait_until(
            lambda: (p := cluster.server.get("pods", name, cluster.namespace)) and p["status"].get("podIP"),
            30,
            cluster.describe,
        )
        assert worker_ip in {n["ip"] for n in nodes if not n["head"]}
        status = wait_until(
            lambda: (
                (c := cluster.server.get("rayclusters", cluster.ray_cluster, cluster.namespace, "ray.io"))
                and c["status"].get("readyWorkerReplicas") == 1
                and c["status"]
            ),
            240,
            cluster.describe,
        )
        assert status["desiredWorkerReplicas"] == 1
    finally:
        workers = tuple(p["metadata"]["name"] for p in cluster.ray_pods("worker", "cpu"))
        cluster.scale_worker_group("cpu", 0, workers)
    wait_until(lambda: not cluster.ray_pods("worker", "cpu"), 60, cluster.describe)
    wait_until(lambda: len(cluster.ray_nodes()) == 1, 120, cluster.describe, 2.0)


def _restricted_pod(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "mlk8s-pod",
            "nodeSelector": {"mlk8s.io/pool": "stateless"},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 50000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": "ghcr.io/mlk8s/mlk8s:0.1.0",
                    "command": command,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    **extra,
                }
            ],
        },
    }


def test_a_pod_reaches_the_heads_gcs_by_service_name_with_the_token_from_the_secret(cluster: ClusterInABox) -> None:
    env = [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mlk8s-ray-auth", "key": "auth_token"}}},
    ]
    checks = {"with-token": env, "without-token": env[:1]}
    with cluster.api_client("admin") as api:
        core = client.CoreV1Api(api)
        for name, variables in checks.items():
            command = ["ray", "health-check", "--address", cluster.ray_service_address]
            core.create_namespaced_pod(cluster.namespace, _restricted_pod(f"gcs-{name}", command, env=variables))
        try:
            ended = {
                name: wait_until(
                    lambda n=name: (
                        (p := cluster.server.get("pods", f"gcs-{n}", cluster.namespace))
                        and p["status"].get("phase") in ("Succeeded", "Failed")
                        and p["status"]["phase"]
                    ),
                    180,
                    cluster.describe,
                )
                for name in checks
            }
            assert ended == {"with-token": "Succeeded", "without-token": "Failed"}, {
                n: cluster.logs(f"gcs-{n}")[-5:] for n in checks
            }
        finally:
            for name in checks:
                core.delete_namespaced_pod(f"gcs-{name}", cluster.namespace, grace_period_seconds=0)
