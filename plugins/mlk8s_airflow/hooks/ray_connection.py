"""``RayHook``: the one reader of the ``ray_default`` connection (the Ray pool's GCS address, token, dashboard).

The preprocessing operator, the Ray pool sensor and its trigger all name the pool through this hook, so the
connection is parsed in one place. The hook never writes the token into the process environment: in the
triggerer many triggers share one process, so a client is handed the token explicitly. Pods never get the
token from here either: the operator references the Kubernetes Secret instead (a Param or an XCom must
never carry it).

Connection fields: ``host`` and ``port`` = the head service's GCS (``mlk8s-ray-head-svc.mlk8s``, 6379);
``password`` = the cluster's auth token (optional: otherwise this process's ``RAY_AUTH_TOKEN``, which the
Helm values set from the Secret); extra ``dashboard_url``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook

#: The GCS port Ray listens on unless told otherwise (``ray start --port``).
DEFAULT_GCS_PORT = 6379
#: The variable Ray reads the token from; the Helm values fill it from the Secret for the Airflow components.
TOKEN_ENV = "RAY_AUTH_TOKEN"  # noqa: S105 - a variable name, not a secret


class RayConnectionError(ValueError):
    """The connection cannot name a Ray pool; the message says which field to change and how."""


@dataclass(frozen=True)
class RayConnection:
    """A Ray pool as a client needs it. ``token`` is None when neither the connection nor the process has one."""

    address: str
    token: str | None
    dashboard_url: str | None

    def __repr__(self) -> str:  # never print the token
        token = "set" if self.token else "none"
        return f"RayConnection(address={self.address!r}, token={token}, dashboard_url={self.dashboard_url!r})"


def parse_ray_connection(
    conn_id: str,
    *,
    host: str | None,
    port: int | None,
    password: str | None = None,
    extra: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RayConnection:
    """The pool named by a connection's fields (pure: tests call it with plain values)."""
    example = (
        f'AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "generic", "host": "mlk8s-ray-head-svc.mlk8s", '
        f'"port": {DEFAULT_GCS_PORT}}}\''
    )
    host = (host or "").strip()
    if not host:
        raise RayConnectionError(f"Airflow connection {conn_id!r} has no host: set it to the Ray head, e.g. {example}")
    if "://" in host:
        raise RayConnectionError(
            f"Airflow connection {conn_id!r} has host {host!r}: give the head's GCS host name without a scheme "
            f"(and port {DEFAULT_GCS_PORT}, not the Ray Client port 10001); the driver pod joins the pool "
            f"through the GCS, e.g. {example}"
        )
    if ":" in host:
        raise RayConnectionError(
            f"Airflow connection {conn_id!r} has host {host!r}: put the port in the connection's port field"
        )
    env: Mapping[str, str] = os.environ if environ is None else environ
    token = password or env.get(TOKEN_ENV) or None
    dashboard = (extra or {}).get("dashboard_url") or None
    return RayConnection(f"{host}:{port or DEFAULT_GCS_PORT}", token, str(dashboard) if dashboard else None)


class RayHook(BaseHook):
    """Reads a Ray connection (default ``ray_default``) into a :class:`RayConnection`."""

    conn_name_attr = "ray_conn_id"
    default_conn_name = "ray_default"
    conn_type = "generic"
    hook_name = "Ray pool"

    def __init__(self, ray_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.ray_conn_id = ray_conn_id

    def get_conn(self) -> RayConnection:
        conn = self.get_connection(self.ray_conn_id)
        return parse_ray_connection(
            self.ray_conn_id, host=conn.host, port=conn.port, password=conn.password, extra=conn.extra_dejson
        )
