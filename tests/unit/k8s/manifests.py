"""Loading the project's Kubernetes files, and the checks several tests share (security, RBAC decisions)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
HELM_VALUES = REPO / "helm-values"


def load_all(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((HELM_VALUES / name).read_text()) if doc]


def load_one(name: str) -> dict[str, Any]:
    docs = load_all(name)
    assert len(docs) == 1, f"{name}: expected one document, found {len(docs)}"
    return docs[0]


def requirement_pin(package: str) -> str:
    """The exact version requirements.txt pins for ``package`` (``ray[data,default]==2.60.0`` -> ``2.60.0``)."""
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if m:
            return m.group(2)
    raise AssertionError(f"requirements.txt pins no {package}")


def project_version() -> str:
    m = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert m, "pyproject.toml has no version"
    return m.group(1)


def deep_merge(base: Any, override: Any) -> Any:
    """Helm's value merge: maps merge recursively, anything else (lists included) replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            out[key] = deep_merge(base.get(key), value)
        return out
    return copy.deepcopy(override)


# --- security ----------------------------------------------------------------------------------------------------


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec an object carries (a Pod, a RayCluster's head and worker templates)."""
    if obj.get("kind") == "Pod":
        yield obj["metadata"].get("name", "pod"), obj["spec"]
    if obj.get("kind") == "RayCluster":
        spec = obj["spec"]
        yield "headGroupSpec", spec["headGroupSpec"]["template"]["spec"]
        for group in spec.get("workerGroupSpecs") or []:
            yield f"workerGroupSpecs[{group['groupName']}]", group["template"]["spec"]


def security_violations(where: str, pod_spec: dict[str, Any]) -> list[str]:
    """What breaks "non-root, no privilege escalation, no capabilities, seccomp RuntimeDefault" in a pod spec."""
    problems = []
    pod_sc = pod_spec.get("securityContext") or {}
    for group in ("initContainers", "containers"):
        for c in pod_spec.get(group) or []:
            sc = c.get("securityContext") or {}
            name = f"{where}/{c['name']}"
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                problems.append(f"{name}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) in (0, None):
                problems.append(f"{name}: runAsUser is root or unset")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{name}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{name}: capabilities are not all dropped")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{name}: adds capabilities")
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{name}: seccompProfile is not RuntimeDefault")
    if pod_spec.get("hostNetwork") or pod_spec.get("hostPID") or pod_spec.get("hostIPC"):
        problems.append(f"{where}: shares a host namespace")
    return problems


# --- RBAC ---------------------------------------------------------------------------------------------------------


def rbac_allows(rules: list[dict[str, Any]], api_group: str, resource: str, verb: str) -> bool:
    """Kubernetes' RBAC decision for one request (resourceNames aside)."""
    for rule in rules:
        if (
            api_group in rule.get("apiGroups", [])
            and resource in rule.get("resources", [])
            and verb in rule.get("verbs", [])
        ):
            return True
    return False


def request_to_rbac(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str]:
    """(apiGroup, resource[/subresource], verb) that the API server authorizes for a request."""
    parts = [p for p in path.split("/") if p]
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest and rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub:
        resource = f"{resource}/{sub}"
    verb = {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method)
    if verb is None:
        if query.get("watch") in ("true", "True", "1"):
            verb = "watch"
        else:
            verb = "get" if name else "list"
    return group, resource, verb


def rbac_checks(method: str, path: str, query: dict[str, str]) -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) the API server checks for a request: a websocket exec is a GET,
    authorized as ``get`` on pods/exec and, since Kubernetes 1.35 (AuthorizePodWebsocketUpgradeCreatePermission),
    a second time as ``create``."""
    group, resource, verb = request_to_rbac(method, path, query)
    checks = {(group, resource, verb)}
    if resource in ("pods/exec", "pods/attach", "pods/portforward") and verb == "get":
        checks.add((group, resource, "create"))
    return checks
