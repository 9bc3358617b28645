"""RBAC as the server enforces it: bearer tokens to users, Roles and bindings evaluated on every request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from tests.k8s_api import MockKubeServer
from tests.k8s_api.rbac import Attributes, RbacStore, UserInfo, forbidden_message
from tests.k8s_api.request_info import request_attributes, websocket_create_check

NS = "mlk8s"
RBAC = "rbac.authorization.k8s.io/v1"


def role(name: str, rules: list[dict[str, Any]], namespace: str = NS, kind: str = "Role") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind == "Role":
        meta["namespace"] = namespace
    return {"apiVersion": RBAC, "kind": kind, "metadata": meta, "rules": rules}


def binding(name: str, role_name: str, subjects: list[dict[str, Any]], namespace: str = NS, **kw: str) -> dict:
    kind = kw.get("kind", "RoleBinding")
    meta: dict[str, Any] = {"name": name}
    if kind == "RoleBinding":
        meta["namespace"] = namespace
    return {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kw.get("role_kind", "Role"), "name": role_name},
        "subjects": subjects,
    }


def sa(name: str, namespace: str = "airflow") -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


@pytest.fixture
def server() -> Iterator[MockKubeServer]:
    with MockKubeServer(rbac=True, namespaces=("default", "airflow", NS)) as srv:
        for name in ("worker", "reader"):
            srv.put_object(
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "airflow"}}
            )
        yield srv


def api_for(server: MockKubeServer, account: str) -> client.ApiClient:
    token = server.issue_token(UserInfo.service_account("airflow", account))
    cfg = client.Configuration()
    cfg.host = server.url
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(cfg)


def pod(name: str = "p1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}]},
    }


def test_a_role_grants_exactly_its_verbs_in_its_namespace(server: MockKubeServer) -> None:
    server.put_object(role("pods-rw", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create"]}]))
    server.put_object(binding("pods-rw", "pods-rw", [sa("worker")]))
    core = client.CoreV1Api(api_for(server, "worker"))

    core.create_namespaced_pod(NS, pod())
    assert core.read_namespaced_pod("p1", NS).metadata.name == "p1"
    assert [p.metadata.name for p in core.list_namespaced_pod(NS).items] == ["p1"]

    with pytest.raises(ApiException) as denied:
        core.delete_namespaced_pod("p1", NS)
    assert denied.value.status == 403
    body = json.loads(denied.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'pods "p1" is forbidden: User "system:serviceaccount:airflow:worker" cannot delete resource "pods" '
        'in API group "" in the namespace "mlk8s"'
    )
    assert body["details"] == {"kind": "pods", "name": "p1"}
    with pytest.raises(ApiException) as other_ns:
        core.list_namespaced_pod("default")
    assert other_ns.value.status == 403
    assert 'in the namespace "default"' in json.loads(other_ns.value.body)["message"]
    with pytest.raises(ApiException) as watch:
        core.list_namespaced_pod(NS, watch=True, timeout_seconds=1, _preload_content=False)
    assert 'cannot watch resource "pods"' in json.loads(watch.value.body)["message"]


def test_subresources_are_separate_grants(server: MockKubeServer) -> None:
    server.put_object(role("pods-r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]))
    server.put_object(binding("pods-r", "pods-r", [sa("reader")]))
    server.put_object(pod())
    core = client.CoreV1Api(api_for(server, "reader"))
    core.read_namespaced_pod("p1", NS)
    with pytest.raises(ApiException) as log:
        core.read_namespaced_pod_log("p1", NS)
    assert 'cannot get resource "pods/log" in API group ""' in json.loads(log.value.body)["message"]
    with pytest.raises(ApiException) as status:
        core.patch_namespaced_pod_status("p1", NS, {"status": {"phase": "Running"}})
    assert 'cannot patch resource "pods/status"' in json.loads(status.value.body)["message"]
    with pytest.raises(ApiException) as evict:
        core.create_namespaced_pod_eviction("p1", NS, {"metadata": {"name": "p1", "namespace": NS}})
    assert 'cannot create resource "pods/eviction"' in json.loads(evict.value.body)["message"]


def test_websocket_exec_needs_get_and_create_on_pods_exec(server: MockKubeServer) -> None:
    """Kubernetes >= 1.35 authorizes a websocket exec as ``get`` and again as ``create`` on pods/exec."""
    server.put_object(pod())
    server.put_object(role("exec-create", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]))
    server.put_object(binding("exec-create", "exec-create", [sa("worker")]))
    core = client.CoreV1Api(api_for(server, "worker"))
    # The client fails to read a refused websocket handshake's body (kubernetes 36: AttributeError); the
    # server's answer is what counts.
    with pytest.raises((ApiException, AttributeError)):
        stream(core.connect_get_namespaced_pod_exec, "p1", NS, command=["true"], container="c", stdout=True)
    assert [r.status for r in server.requests if r.path.endswith("/exec")] == [403]
    checks = [(r.verb, r.combined_resource, r.allowed, r.synthetic) for r in server.audit if r.subresource == "exec"]
    assert checks == [("get", "pods/exec", False, False)]

    server.put_object(role("exec-get", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}]))
    server.put_object(binding("exec-get", "exec-get", [sa("reader")]))
    reader = client.CoreV1Api(api_for(server, "reader"))
    with pytest.raises((ApiException, AttributeError)):
        stream(reader.connect_get_namespaced_pod_exec, "p1", NS, command=["true"], container="c", stdout=True)
    assert [r.status for r in server.requests if r.path.endswith("/exec")] == [403, 403]
    last = [(r.verb, r.allowed, r.synthetic) for r in server.audit if r.user.endswith(":reader")][-2:]
    assert last == [("get", True, False), ("create", False, True)]


def test_cluster_role_through_role_binding_is_namespaced_and_cluster_binding_is_global(server: MockKubeServer) -> None:
    server.put_object(
        role("secret-reader", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}], kind="ClusterRole")
    )
    server.put_object(binding("secrets", "secret-reader", [sa("worker")], role_kind="ClusterRole"))
    core = client.CoreV1Api(api_for(server, "worker"))
    core.list_namespaced_secret(NS)
    with pytest.raises(ApiException):
        core.list_namespaced_secret("default")
    with pytest.raises(ApiException) as all_ns:
        core.list_secret_for_all_namespaces()
    assert json.loads(all_ns.value.body)["message"].endswith("at the cluster scope")

    server.put_object(
        binding(
            "secrets-everywhere", "secret-reader", [sa("worker")], kind="ClusterRoleBinding", role_kind="ClusterRole"
        )
    )
    core.list_namespaced_secret("default")
    core.list_secret_for_all_namespaces()


def test_api_groups_resource_names_and_wildcards() -> None:
    worker = UserInfo.service_account("airflow", "worker")
    store = RbacStore.from_objects(
        [
            role(
                "ray",
                [
                    {
                        "apiGroups": ["ray.io"],
                        "resources": ["rayclusters"],
                        "resourceNames": ["pool"],
                        "verbs": ["get", "patch"],
                    }
                ],
            ),
            role("scale", [{"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"]}]),
            binding("ray", "ray", [sa("worker")]),
            binding("scale", "scale", [sa("worker")]),
        ]
    )

    def allowed(verb: str, group: str, resource: str, name: str = "", sub: str = "") -> bool:
        return store.authorize(Attributes(worker, verb, group, "v1", resource, sub, NS, name)).allowed

    assert allowed("patch", "ray.io", "rayclusters", "pool")
    assert not allowed("patch", "ray.io", "rayclusters", "other")
    assert not allowed("list", "ray.io", "rayclusters")  # resourceNames never match a list
    assert not allowed("get", "", "rayclusters", "pool")  # wrong API group
    assert allowed("update", "apps", "deployments", "d", "scale")
    assert not allowed("update", "apps", "deployments", "d")


def test_a_binding_to_a_missing_role_grants_nothing_and_says_why(server: MockKubeServer) -> None:
    server.put_object(binding("dangling", "does-not-exist", [sa("worker")]))
    core = client.CoreV1Api(api_for(server, "worker"))
    with pytest.raises(ApiException) as denied:
        core.list_namespaced_pod(NS)
    assert json.loads(denied.value.body)["message"].endswith(
        ': RBAC: roles.rbac.authorization.k8s.io "does-not-exist" not found'
    )


def test_authentication_unknown_token_deleted_account_anonymous(server: MockKubeServer) -> None:
    cfg = client.Configuration()
    cfg.host = server.url
    cfg.api_key = {"BearerToken": "not-a-token"}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    with pytest.raises(ApiException) as unknown:
        client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_pod(NS)
    assert unknown.value.status == 401

    api = api_for(server, "reader")
    server.delete(server.resource_type("serviceaccounts"), "airflow", "reader", None)
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(api).list_namespaced_pod(NS)
    assert gone.value.status == 401

    cfg = client.Configuration()
    cfg.host = server.url
    with pytest.raises(ApiException) as anonymous:
        client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_pod(NS)
    assert anonymous.value.status == 403
    assert 'User "system:anonymous" cannot list' in json.loads(anonymous.value.body)["message"]
    assert client.VersionApi(api_for(server, "worker")).get_code().git_version  # discovery: any authenticated user


def test_the_admin_kubeconfig_can_do_everything(server: MockKubeServer) -> None:
    with server.api_client() as admin:
        core = client.CoreV1Api(admin)
        core.create_namespaced_pod(NS, pod("by-admin"))
        core.delete_namespaced_pod("by-admin", NS)
        client.RbacAuthorizationV1Api(admin).list_cluster_role()


def test_request_attributes_follow_the_request_info_factory() -> None:
    u = UserInfo("u")
    cases = {
        ("GET", "/api/v1/namespaces/mlk8s/pods", ()): ("list", "", "pods", "", "mlk8s", ""),
        ("GET", "/api/v1/namespaces/mlk8s/pods", (("watch", "true"),)): ("watch", "", "pods", "", "mlk8s", ""),
        ("GET", "/api/v1/namespaces/mlk8s/pods/p/log", ()): ("get", "", "pods", "log", "mlk8s", "p"),
        ("POST", "/api/v1/namespaces/mlk8s/pods/p/eviction", ()): ("create", "", "pods", "eviction", "mlk8s", "p"),
        ("PATCH", "/apis/ray.io/v1/namespaces/mlk8s/rayclusters/r", ()): (
            "patch",
            "ray.io",
            "rayclusters",
            "",
            "mlk8s",
            "r",
        ),
        ("DELETE", "/api/v1/namespaces/mlk8s/pods", ()): ("deletecollection", "", "pods", "", "mlk8s", ""),
        ("GET", "/api/v1/namespaces/mlk8s", ()): ("get", "", "namespaces", "", "mlk8s", "mlk8s"),
        ("GET", "/api/v1/nodes", ()): ("list", "", "nodes", "", "", ""),
    }
    for (method, path, query), expected in cases.items():
        a = request_attributes(u, method, path, dict(query))
        assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == expected, path
    version = request_attributes(u, "GET", "/version", {})
    assert not version.is_resource_request and version.path == "/version"
    exec_attrs = request_attributes(u, "GET", "/api/v1/namespaces/mlk8s/pods/p/exec", {})
    assert websocket_create_check(exec_attrs, True) is not None
    assert websocket_create_check(exec_attrs, False) is None
    assert forbidden_message(version) == 'forbidden: User "u" cannot get path "/version"'
