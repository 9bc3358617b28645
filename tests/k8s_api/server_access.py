"""Who is asking and may they: bearer tokens, RBAC on every request, the audit of each check, the
request log, admission warnings (the HTTP handler calls these around every request)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.k8s_api import authentication
from tests.k8s_api.admission import warning_header
from tests.k8s_api.audit import AuditRecord
from tests.k8s_api.authentication import ANONYMOUS
from tests.k8s_api.errors import ApiError
from tests.k8s_api.rbac import RBAC_GROUP, RbacStore, UserInfo, forbidden_message
from tests.k8s_api.request_info import request_attributes, websocket_create_check
from tests.k8s_api.server_records import RecordedRequest

Obj = dict[str, Any]


class AccessMixin:
    """Part of :class:`tests.k8s_api.server.MockKubeServer` (its state lives there)."""

    def kubeconfig(self, namespace: str = "mlk8s", token: str | None = None) -> Obj:
        """A kubeconfig dict pointing at this server (for ``KubernetesHook``'s ``config_dict`` or a file).

        Without ``token`` it carries the test set-up's own credential (the admin, when there is one).
        """
        return authentication.kubeconfig(self.url, token or self.token, namespace)

    def write_kubeconfig(self, path: Path, namespace: str = "mlk8s", token: str | None = None) -> Path:
        return authentication.write_kubeconfig(path, self.kubeconfig(namespace, token))

    def issue_token(self, user: UserInfo) -> str:
        """A bearer token for ``user`` (a ServiceAccount's authenticates only while the ServiceAccount exists)."""
        return self.tokens.issue(user)

    def service_account_kubeconfig(self, namespace: str, name: str, default_namespace: str = "mlk8s") -> Obj:
        """A kubeconfig for ServiceAccount ``namespace/name``, as a pod's projected token would give it."""
        return self.kubeconfig(default_namespace, self.issue_token(UserInfo.service_account(namespace, name)))

    def begin_request(self) -> None:
        self._request_context.warnings = []
        self._request_context.user = None

    def add_warning(self, message: str) -> None:
        warnings = getattr(self._request_context, "warnings", None)
        if warnings is not None:
            warnings.append(warning_header(message))

    def request_warnings(self) -> list[str]:
        return list(getattr(self._request_context, "warnings", None) or [])

    def end_request(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        content_type: str | None,
        body: Any,
        status: int,
    ) -> None:
        user: UserInfo | None = getattr(self._request_context, "user", None)
        with self._lock:
            self.requests.append(
                RecordedRequest(method, path, query, content_type, body, status, user.name if user else None)
            )
        self._request_context.warnings = None

    def rbac_store(self) -> RbacStore:
        """The RBAC objects stored right now, as the authorizer reads them."""
        with self._lock:
            objects = [
                copy.deepcopy(o)
                for (g, p, _, _), o in self._objects.items()
                if g == RBAC_GROUP and p in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
            ]
        return RbacStore.from_objects(objects)

    def authenticate(self, authorization: str | None) -> UserInfo:
        """The requester, or 401: no credential where one is required, an unknown token, a deleted ServiceAccount."""
        user = self.tokens.lookup(authorization)
        if user is ANONYMOUS and self.token is not None and not self.rbac:
            user = None  # a static-token server requires the token
        if user is not None and (ref := user.service_account_ref) is not None:
            if self.get("serviceaccounts", ref[1], ref[0]) is None:
                user = None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user

    def authenticate_and_authorize(
        self, method: str, path: str, query: Mapping[str, str], authorization: str | None, *, websocket: bool = False
    ) -> UserInfo:
        """Authenticate the request; with RBAC on, authorize it (403 in the API server's words) and audit it."""
        user = self.authenticate(authorization)
        self._request_context.user = user
        if not self.rbac:
            return user
        attrs = request_attributes(user, method, path, query)
        checks = [(attrs, False)]
        extra = websocket_create_check(attrs, websocket)
        if extra is not None:
            checks.append((extra, True))
        store = self.rbac_store()
        for check, synthetic in checks:
            decision = store.authorize(check)
            with self._lock:
                self.audit.append(AuditRecord.of(check, decision.allowed, method, synthetic=synthetic))
            if not decision.allowed:
                details: Obj = {"kind": check.resource} if check.resource else {}
                if check.api_group:
                    details["group"] = check.api_group
                if check.name:
                    details["name"] = check.name
                raise ApiError(403, "Forbidden", forbidden_message(check, decision.reason), details or None)
        return user
