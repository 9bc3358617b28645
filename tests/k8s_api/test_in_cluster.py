"""Pods call the API server as their ServiceAccount: in-cluster config, the token volume, RBAC on their calls."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.k8s_api import MockKubeServer

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the process kubelet needs root (network namespaces, mounts)"),
]

NS = "mlk8s"
SCRIPT = """
import os
from kubernetes import client, config
if not os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
    print("no token"); raise SystemExit(0)
config.load_incluster_config()
core = client.CoreV1Api()
print("pods", len(core.list_namespaced_pod(open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()).items))
try:
    core.list_namespaced_secret("mlk8s")
except client.exceptions.ApiException as exc:
    print("secrets", exc.status)
"""


@pytest.fixture(scope="module")
def server() -> Iterator[MockKubeServer]:
    with MockKubeServer(rbac=True, admission=("ServiceAccount",)) as srv:
        srv.run_pods()
        yield srv


def run(server: MockKubeServer, name: str, account: str) -> list[str]:
    with server.api_client() as api:
        core = client.CoreV1Api(api)
        body: dict[str, Any] = {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": account,
                "nodeSelector": {"mlk8s.io/pool": "stateless"},
                "containers": [
                    {"name": "main", "image": "ghcr.io/mlk8s/mlk8s:0.1.0", "command": ["python", "-c", SCRIPT]}
                ],
            },
        }
        core.create_namespaced_pod(NS, body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pod = server.get("pods", name, NS)
        if pod and pod["status"].get("phase") in ("Succeeded", "Failed"):
            return server.log_lines(NS, name)
        time.sleep(0.1)
    raise AssertionError(f"pod {name} did not finish: {server.log_lines(NS, name)[-10:]}")


def test_a_pod_uses_its_service_account_and_rbac_applies(server: MockKubeServer) -> None:
    server.put_object({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": NS}})
    server.put_object(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": NS},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        }
    )
    server.put_object(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pod-reader", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}],
        }
    )
    lines = run(server, "reads", "reader")
    assert lines == ["pods 1", "secrets 403"], lines
    calls = [(r.verb, r.resource, r.allowed) for r in server.audit if r.user == f"system:serviceaccount:{NS}:reader"]
    assert calls == [("list", "pods", True), ("list", "secrets", False)]


def test_a_pod_whose_account_mounts_no_token_has_none(server: MockKubeServer) -> None:
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "quiet", "namespace": NS},
            "automountServiceAccountToken": False,
        }
    )
    assert run(server, "quiet", "quiet") == ["no token"]
