"""RBAC authorization as the API server's RBAC authorizer evaluates it, over plain rbac.authorization.k8s.io/v1 dicts.

Why not a library: no Python package evaluates Kubernetes RBAC; the rules are short and published
(k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac, ``rbac/v1`` helpers), and the tests need the *server's*
answer, not a linter's. What is evaluated, as the real authorizer does:

* a request is (user, groups, verb, apiGroup, resource, subresource, namespace, name) or, for paths outside
  ``/api`` and ``/apis``, (user, groups, verb, path) matched against ``nonResourceURLs``;
* RoleBindings grant their Role's or ClusterRole's rules inside their own namespace only; ClusterRoleBindings
  grant a ClusterRole's rules everywhere, cluster-scoped resources included;
* subjects: ``User`` by name, ``Group`` by name, ``ServiceAccount`` by namespace and name (its user name is
  ``system:serviceaccount:<ns>:<name>``, its groups ``system:serviceaccounts``, ``system:serviceaccounts:<ns>``
  and ``system:authenticated``);
* a rule matches when its verbs, apiGroups, resources (``pods``, ``pods/log``, ``*``, ``*/scale``) and
  resourceNames (empty = all) all match; ``*`` is a wildcard in verbs, apiGroups and resources;
* a binding whose role is missing grants nothing, and the denial says so
  (``RBAC: role.rbac.authorization.k8s.io "x" not found``), as the real server's reason does.

Not evaluated: aggregated ClusterRoles (``aggregationRule``), the ``escalate``/``bind``/``impersonate`` special
verbs' semantics (they match as plain verbs), and authorizers other than RBAC (Node, webhooks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class UserInfo:
    """Who a request is from, as the authenticator hands it to the authorizer."""

    name: str
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> UserInfo:
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        )

    @property
    def service_account_ref(self) -> tuple[str, str] | None:
        """``(namespace, name)`` when this is a ServiceAccount's user."""
        parts = self.name.split(":")
        if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
            return parts[2], parts[3]
        return None


@dataclass(frozen=True)
class Attributes:
    """One authorization question, the fields of the API server's ``authorizer.Attributes``."""

    user: UserInfo
    verb: str
    api_group: str = ""
    api_version: str = "v1"
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    #: For non-resource requests (``/version``, ``/healthz``): the path; ``resource`` is then empty.
    path: str = ""

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: What granted it (``RoleBinding mlk8s/mlk8s-operators of Role mlk8s-operators``), or why nothing did.
    reason: str = ""


# --- rule matching (rbac/v1 helpers) ---------------------------------------------------------------------------


def verb_matches(rule: Mapping[str, Any], verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def api_group_matches(rule: Mapping[str, Any], group: str) -> bool:
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def resource_matches(rule: Mapping[str, Any], combined: str, subresource: str) -> bool:
    for resource in rule.get("resources") or []:
        if resource in ("*", combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Mapping[str, Any], name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def non_resource_url_matches(rule: Mapping[str, Any], path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    if not verb_matches(rule, attrs.verb):
        return False
    if not attrs.is_resource_request:
        return non_resource_url_matches(rule, attrs.path)
    return (
        api_group_matches(rule, attrs.api_group)
        and resource_matches(rule, attrs.combined_resource, attrs.subresource)
        and resource_name_matches(rule, attrs.name)
    )


def subject_matches(subject: Mapping[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{subject.get('name')}"
    return False


# --- the authorizer --------------------------------------------------------------------------------------------


@dataclass
class RbacStore:
    """The RBAC objects the authorizer reads: Roles and RoleBindings per namespace, the cluster-wide ones."""

    roles: dict[tuple[str, str], Obj] = field(default_factory=dict)
    role_bindings: dict[tuple[str, str], Obj] = field(default_factory=dict)
    cluster_roles: dict[str, Obj] = field(default_factory=dict)
    cluster_role_bindings: dict[str, Obj] = field(default_factory=dict)

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]], default_namespace: str = "default") -> RbacStore:
        """A store from manifests (e.g. ``yaml.safe_load_all`` of helm-values/rbac.yaml); other kinds are skipped."""
        store = cls()
        for obj in objects:
            store.add(obj, default_namespace)
        return store

    def add(self, obj: Mapping[str, Any], default_namespace: str = "default") -> None:
        if not obj or str(obj.get("apiVersion", "")).rpartition("/")[0] != RBAC_GROUP:
            return
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        namespace = meta.get("namespace") or default_namespace
        kind = obj.get("kind")
        if kind == "Role":
            self.roles[(namespace, name)] = dict(obj)
        elif kind == "RoleBinding":
            self.role_bindings[(namespace, name)] = dict(obj)
        elif kind == "ClusterRole":
            self.cluster_roles[name] = dict(obj)
        elif kind == "ClusterRoleBinding":
            self.cluster_role_bindings[name] = dict(obj)

    def grants(self, user: UserInfo, namespace: str = "") -> Iterable[tuple[str, Mapping[str, Any]]]:
        """``(where from, rule)`` for every rule that applies to ``user`` in ``namespace`` ("" = cluster scope)."""
        for rules_from, _missing, rules in self._bound_rules(user, namespace):
            for rule in rules:
                yield rules_from, rule

    def missing_roles(self, user: UserInfo, namespace: str = "") -> list[str]:
        return [missing for _, missing, _ in self._bound_rules(user, namespace) if missing]

    def _bound_rules(self, user: UserInfo, namespace: str) -> Iterable[tuple[str, str, Sequence[Mapping[str, Any]]]]:
        for name, binding in sorted(self.cluster_role_bindings.items()):
            if any(subject_matches(s, user, "") for s in binding.get("subjects") or []):
                yield self._resolve(f"ClusterRoleBinding {name}", binding.get("roleRef") or {}, "")
        if not namespace:
            return
        for (ns, name), binding in sorted(self.role_bindings.items()):
            if ns == namespace and any(subject_matches(s, user, ns) for s in binding.get("subjects") or []):
                yield self._resolve(f"RoleBinding {ns}/{name}", binding.get("roleRef") or {}, ns)

    def _resolve(
        self, via: str, ref: Mapping[str, Any], namespace: str
    ) -> tuple[str, str, Sequence[Mapping[str, Any]]]:
        kind, name = ref.get("kind"), ref.get("name", "")
        role = self.cluster_roles.get(name) if kind == "ClusterRole" else self.roles.get((namespace, name))
        if role is None:
            plural = "clusterroles" if kind == "ClusterRole" else "roles"
            return via, f'{plural}.{RBAC_GROUP} "{name}" not found', ()
        return f"{via} of {kind} {name}", "", role.get("rules") or ()

    def authorize(self, attrs: Attributes) -> Decision:
        for rules_from, rule in self.grants(attrs.user, attrs.namespace):
            if rule_allows(rule, attrs):
                return Decision(True, rules_from)
        missing = self.missing_roles(attrs.user, attrs.namespace)
        return Decision(False, f"RBAC: {', '.join(missing)}" if missing else "")


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """The API server's 403 message (``pods "x" is forbidden: User "..." cannot get resource ...``)."""
    user = attrs.user.name
    if not attrs.is_resource_request:
        text = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
        return f"forbidden: {text}" + (f": {reason}" if reason else "")
    resource = attrs.combined_resource
    if attrs.namespace:
        text = (
            f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" '
            f'in the namespace "{attrs.namespace}"'
        )
    else:
        text = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" at the cluster scope'
    if reason:
        text = f"{text}: {reason}"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return f"{subject} is forbidden: {text}"


#: The bootstrap policy every cluster has, reduced to what clients of this project touch: discovery and
#: version for any authenticated user, everything for ``system:masters`` (the test set-up's admin).
BOOTSTRAP_POLICY: tuple[Obj, ...] = (
    {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "cluster-admin"},
        "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    },
    {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "cluster-admin"},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": "system:masters"}],
    },
    {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:discovery"},
        "rules": [
            {
                "nonResourceURLs": [
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                "verbs": ["get"],
            }
        ],
    },
    {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "system:discovery"},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "system:discovery"},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": "system:authenticated"}],
    },
)
