"""What a request asks for, in the authorizer's terms: the API server's ``RequestInfoFactory`` for our paths.

``GET`` of a collection is ``list`` (``watch`` with ``?watch=true``), of one object ``get``; ``POST`` is
``create``, ``PUT`` ``update``, ``PATCH`` ``patch``, ``DELETE`` ``delete`` (``deletecollection`` without a
name). ``/api/v1/namespaces/<ns>`` is the namespace ``<ns>`` itself. Paths outside ``/api`` and ``/apis`` are
non-resource requests. A websocket ``GET`` of ``pods/exec``, ``pods/attach`` or ``pods/portforward`` is
authorized twice since Kubernetes 1.35 (feature gate ``AuthorizePodWebsocketUpgradeCreatePermission``, on by
default): as ``get`` and, synthetically, as ``create`` (:func:`websocket_create_check`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from tests.k8s_api.rbac import Attributes, UserInfo

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get"}
_CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")


def _true(value: str | None) -> bool:
    return (value or "") in ("1", "t", "T", "true", "TRUE", "True")


def request_attributes(user: UserInfo, method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The authorizer attributes of one HTTP request."""
    parts = [p for p in path.split("/") if p]
    method = method.upper()
    verb = _METHOD_VERBS.get(method, method.lower())
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(user, verb, path=path or "/")
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace = rest[1]
        rest = rest[2:] if len(rest) > 2 else ["namespaces", namespace]
    if not rest:
        return Attributes(user, verb, path=path)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name:
        if method == "GET":
            verb = "watch" if _true(query.get("watch")) else "list"
        elif method == "DELETE":
            verb = "deletecollection"
    return Attributes(user, verb, group, version, resource, subresource, namespace, name)


def websocket_create_check(attrs: Attributes, is_websocket: bool) -> Attributes | None:
    """The second, synthetic ``create`` check a websocket ``GET`` of exec/attach/portforward needs (1.35+)."""
    if is_websocket and attrs.verb == "get" and attrs.resource == "pods" and attrs.subresource in _CONNECT_SUBRESOURCES:
        return dataclasses.replace(attrs, verb="create")
    return None
