"""The API calls each identity made, and how they compare with the RBAC a manifest grants that identity.

The server appends one :class:`AuditRecord` per authorization check (a websocket exec makes two: ``get`` and
the synthetic ``create``), with the identity, the authorizer's attributes and the answer it gave. A test then
runs :func:`rbac_usage` over the records of one component with the RBAC objects of ``helm-values/rbac.yaml``:
it fails on a call the manifest does not grant (the component would be denied on a real cluster) and on a
grant no call used (the manifest is wider than least privilege). The evaluation is the real one
(:mod:`tests.k8s_api.rbac`), so both sides of the contract, the calls and the manifest, are checked together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.k8s_api.rbac import BOOTSTRAP_POLICY, Attributes, RbacStore, UserInfo, rule_allows


@dataclass(frozen=True)
class AuditRecord:
    """One authorization check the server made for a request."""

    user: str
    groups: tuple[str, ...]
    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    allowed: bool
    method: str = ""
    path: str = ""
    #: The second check of a websocket exec/attach/portforward (``create``, Kubernetes 1.35+).
    synthetic: bool = False

    @classmethod
    def of(cls, attrs: Attributes, allowed: bool, method: str, *, synthetic: bool = False) -> AuditRecord:
        return cls(
            attrs.user.name,
            attrs.user.groups,
            attrs.verb,
            attrs.api_group,
            attrs.resource,
            attrs.subresource,
            attrs.namespace,
            attrs.name,
            allowed,
            method,
            attrs.path,
            synthetic,
        )

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def attributes(self) -> Attributes:
        return Attributes(
            UserInfo(self.user, self.groups),
            self.verb,
            self.api_group,
            "v1",
            self.resource,
            self.subresource,
            self.namespace,
            self.name,
            self.path,
        )

    def describe(self) -> str:
        if not self.resource:
            return f"{self.verb} {self.path}"
        where = f" in {self.namespace}" if self.namespace else " (cluster scope)"
        named = f" {self.name}" if self.name else ""
        group = self.api_group or "core"
        return f"{self.verb} {self.combined_resource}{named} [{group}]{where}"


@dataclass(frozen=True)
class Grant:
    """One (apiGroup, resource, verb) a rule grants, and where it comes from."""

    source: str
    namespace: str
    api_group: str
    resource: str
    verb: str
    resource_names: tuple[str, ...] = ()

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"apiGroups": [self.api_group], "resources": [self.resource], "verbs": [self.verb]}
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        return rule

    def describe(self) -> str:
        names = f" (resourceNames {list(self.resource_names)})" if self.resource_names else ""
        return f"{self.verb} {self.resource} [{self.api_group or 'core'}]{names} from {self.source}"


@dataclass
class RbacUsage:
    """How one identity's calls compare with what the manifests grant it."""

    user: str
    calls: list[AuditRecord] = field(default_factory=list)
    ungranted: list[AuditRecord] = field(default_factory=list)
    unused: list[Grant] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.ungranted and not self.unused

    def explain(self) -> str:
        lines = [f"RBAC of {self.user}: {len(self.calls)} calls checked"]
        seen: set[str] = set()
        for rec in self.ungranted:
            text = rec.describe()
            if text not in seen:
                seen.add(text)
                lines.append(f"  not granted: {text}")
        lines.extend(f"  granted but never used: {g.describe()}" for g in self.unused)
        return "\n".join(lines)


def _grants(store: RbacStore, user: UserInfo, namespaces: Iterable[str]) -> list[Grant]:
    grants: dict[Grant, None] = {}
    for namespace in sorted(set(namespaces) | {""}):
        for source, rule in store.grants(user, namespace):
            if rule.get("nonResourceURLs"):
                continue
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        scope = namespace if source.startswith("RoleBinding") else ""
                        names = tuple(rule.get("resourceNames") or ())
                        grants[Grant(source, scope, group, resource, verb, names)] = None
    return list(grants)


def rbac_usage(
    records: Iterable[AuditRecord], rbac_objects: Iterable[Mapping[str, Any]], user: UserInfo | str
) -> RbacUsage:
    """Evaluate ``user``'s recorded calls against ``rbac_objects`` (e.g. the documents of helm-values/rbac.yaml).

    ``ungranted``: calls those objects (plus the bootstrap discovery roles every cluster has) do not allow.
    ``unused``: each (apiGroup, resource, verb) of a rule bound to ``user`` that no allowed call needed.
    """
    name = user.name if isinstance(user, UserInfo) else user
    calls = [r for r in records if r.user == name]
    info = UserInfo(name, calls[0].groups) if calls else (user if isinstance(user, UserInfo) else UserInfo(name))
    objects = list(rbac_objects)
    store = RbacStore.from_objects([*BOOTSTRAP_POLICY, *objects])
    manifest_only = RbacStore.from_objects(objects)
    usage = RbacUsage(name, calls)
    used: list[Attributes] = []
    for rec in calls:
        attrs = rec.attributes()
        if store.authorize(attrs).allowed:
            used.append(attrs)
        else:
            usage.ungranted.append(rec)
    namespaces = {ns for ns, _ in manifest_only.role_bindings} | {r.namespace for r in calls}
    for grant in _grants(manifest_only, info, namespaces):
        rule = grant.rule()
        if not any(
            a.is_resource_request and (not grant.namespace or a.namespace == grant.namespace) and rule_allows(rule, a)
            for a in used
        ):
            usage.unused.append(grant)
    return usage
