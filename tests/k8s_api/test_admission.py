"""Pod Security admission: the namespace labels decide, refusals name the field and the fix."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.k8s_api import MockKubeServer
from tests.k8s_api.admission import admit_pod, violations, warning_header

RESTRICTED_OK: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "ok"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 50000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "main",
                "image": "busybox:1.36",
                "command": ["true"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    },
}


def bare_pod(name: str = "bare") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}]},
    }


def namespace(name: str, **levels: str) -> dict[str, Any]:
    labels = {f"pod-security.kubernetes.io/{mode}": level for mode, level in levels.items()}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
def server() -> Iterator[MockKubeServer]:
    with MockKubeServer(admission=("PodSecurity",), namespaces=()) as srv:
        srv.put_object(namespace("strict", enforce="restricted"))
        srv.put_object(namespace("base", enforce="baseline", warn="restricted", audit="restricted"))
        srv.put_object(namespace("open"))
        yield srv


def test_restricted_refuses_a_bare_pod_naming_every_field_to_set(server: MockKubeServer) -> None:
    with server.api_client() as api, pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).create_namespaced_pod("strict", bare_pod())
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert (
        'pods "bare" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "main" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
        '(container "main" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
        'container "main" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "main" '
        'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    ) == message
    assert server.get("pods", "bare", "strict") is None


def test_a_pod_meeting_restricted_is_admitted_everywhere_without_warnings(server: MockKubeServer) -> None:
    for ns in ("strict", "base", "open"):
        pod = copy.deepcopy(RESTRICTED_OK)
        response = _create_raw(server, ns, pod)
        assert response.status == 201, response.data
        assert "Warning" not in response.headers
    assert server.pod_security_audit == []


def test_baseline_admits_with_a_restricted_warning_and_audit(server: MockKubeServer) -> None:
    response = _create_raw(server, "base", bare_pod())
    assert response.status == 201
    warning = response.headers["Warning"]
    assert warning.startswith('299 - "would violate PodSecurity \\"restricted:latest\\": allowPrivilegeEscalation')
    assert [name for name, _ in server.pod_security_audit] == ["bare"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["containers"][0].setdefault("securityContext", {}).update(privileged=True),
         'privileged (container "main" must not set securityContext.privileged=true)'),
        (lambda s: s.update(hostNetwork=True, hostPID=True), "host namespaces (hostNetwork=true, hostPID=true)"),
        (lambda s: s.update(volumes=[{"name": "host", "hostPath": {"path": "/etc"}}]), 'hostPath volumes (volume "host")'),
        (lambda s: s["containers"][0].setdefault("securityContext", {}).update(capabilities={"add": ["SYS_ADMIN", "CHOWN"]}),
         'non-default capabilities (container "main" must not include "SYS_ADMIN" in securityContext.capabilities.add)'),
        (lambda s: s["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 8080}]),
         'hostPort (container "main" uses hostPort 8080)'),
        (lambda s: s.update(securityContext={"seccompProfile": {"type": "Unconfined"}}),
         'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'),
        (lambda s: s.update(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
         "forbidden sysctls (kernel.msgmax)"),
    ],
)  # fmt: skip
def test_baseline_refusals(server: MockKubeServer, change: Any, expected: str) -> None:
    pod = bare_pod()
    change(pod["spec"])
    response = _create_raw(server, "base", pod)
    assert response.status == 403
    assert f'violates PodSecurity "baseline:latest": {expected}' in json.loads(response.data)["message"]
    response = _create_raw(server, "open", pod)  # no label: privileged, anything goes
    assert response.status == 201


def test_restricted_details() -> None:
    pod = copy.deepcopy(RESTRICTED_OK)
    main = pod["spec"]["containers"][0]
    main["securityContext"]["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert violations(pod, "restricted") == []
    main["securityContext"]["capabilities"]["add"].append("NET_RAW")
    main["securityContext"]["runAsNonRoot"] = False
    pod["spec"]["securityContext"]["runAsUser"] = 0
    pod["spec"]["volumes"].append({"name": "nfs", "nfs": {"server": "x", "path": "/"}})
    found = [str(v) for v in violations(pod, "restricted")]
    assert found == [
        'non-default capabilities (container "main" must not include "NET_RAW" in securityContext.capabilities.add)',
        'unrestricted capabilities (container "main" must not include "NET_RAW" in securityContext.capabilities.add)',
        'restricted volume types (volume "nfs" uses restricted volume type "nfs")',
        'runAsNonRoot != true (container "main" must not set securityContext.runAsNonRoot=false)',
        "runAsUser=0 (pod must not set runAsUser=0)",
    ]
    sidecar = {"name": "airflow-xcom-sidecar", "image": "alpine:3.24.2", "command": ["sh"]}
    ok = copy.deepcopy(RESTRICTED_OK)
    ok["spec"]["containers"].append(sidecar)
    assert [v.reason for v in violations(ok, "restricted")] == [
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
    ]
    assert admit_pod(ok, namespace("x", enforce="nonsense")).forbidden is not None
    assert warning_header('a "b"') == '299 - "a \\"b\\""'


def _create_raw(server: MockKubeServer, ns: str, pod: dict[str, Any]) -> Any:
    http = urllib3.PoolManager()
    return http.request(
        "POST",
        f"{server.url}/api/v1/namespaces/{ns}/pods",
        body=json.dumps(pod).encode(),
        headers={"Content-Type": "application/json"},
    )
