"""The kinds the mock API server serves: group, version, plural, kind, scope and whether they have a status."""

from __future__ import annotations

from dataclasses import dataclass

from tests.k8s_api.schemas import CustomResource


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status: bool = False
    custom: CustomResource | None = None
    writable: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def builtin_types() -> list[ResourceType]:
    return [
        ResourceType("", "v1", "pods", "Pod", has_status=True),
        ResourceType("", "v1", "events", "Event"),
        ResourceType("", "v1", "secrets", "Secret"),
        ResourceType("", "v1", "configmaps", "ConfigMap"),
        ResourceType("", "v1", "services", "Service", has_status=True),
        ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
        ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, has_status=True),
        ResourceType("", "v1", "nodes", "Node", namespaced=False, has_status=True, writable=False),
        ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", has_status=True),
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
        ResourceType("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", namespaced=False),
    ]
