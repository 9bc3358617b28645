"""The API server's error answers: a ``Status`` body with the code, reason and message clients parse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.k8s_api.resources import ResourceType
from tests.k8s_api.schemas import ObjectInvalid

Obj = dict[str, Any]


class ApiError(Exception):
    """An error the server answers with a ``Status`` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(rt: ResourceType, name: str) -> ApiError:
    resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
    return ApiError(
        404, "NotFound", f'{resource} "{name}" not found', {"name": name, "group": rt.group, "kind": rt.plural}
    )


def conflict(rt: ResourceType, name: str) -> ApiError:
    resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": rt.group, "kind": rt.plural},
    )


def invalid(exc: ObjectInvalid, group: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        str(exc),
        {
            "name": exc.name,
            "group": group,
            "kind": exc.kind,
            "causes": [{"reason": e.reason, "message": e.message, "field": e.field} for e in exc.errors],
        },
    )
