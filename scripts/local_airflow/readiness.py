"""Bounded waits: the API server's health report, the UI page, and the DAGs as the dag-processor parsed them.

Every wait has a deadline and checks that the component it waits for is still running, so a component that
dies while starting is reported at once with its log, never waited on until the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class NotReady(RuntimeError):
    """A component did not come up in time, or died; the message says which and shows its log."""


def unhealthy(report: dict[str, Any]) -> list[str]:
    """The components the API server's ``/api/v2/monitor/health`` does not report healthy."""
    return [name for name in HEALTH_COMPONENTS if (report.get(name) or {}).get("status") != "healthy"]


def wait_until(check: Callable[[], str | None], *, timeout_s: float, what: str, died: Callable[[], str | None]) -> None:
    """Call ``check`` (None = ready, else what is missing) until ready, ``died`` reports a death, or timeout."""
    deadline = time.monotonic() + timeout_s
    missing = "no answer yet"
    while time.monotonic() < deadline:
        dead = died()
        if dead:
            raise NotReady(dead)
        try:
            result = check()
        except httpx.HTTPError as exc:
            result = f"{type(exc).__name__}: {exc}"
        if result is None:
            return
        missing = result
        time.sleep(1.0)
    raise NotReady(f"{what} not ready after {timeout_s:.0f} s: {missing}")


def health_check(client: httpx.Client) -> str | None:
    response = client.get("/api/v2/monitor/health")
    if response.status_code != 200:
        return f"health answered {response.status_code}"
    down = unhealthy(response.json())
    return f"not healthy yet: {', '.join(down)}" if down else None


def ui_check(client: httpx.Client) -> str | None:
    response = client.get("/")
    return None if response.status_code == 200 and "<html" in response.text.lower() else f"UI {response.status_code}"


class Api:
    """The few REST calls ``make up`` makes as admin (a JWT from ``/auth/token``)."""

    def __init__(self, client: httpx.Client, user: str, password: str) -> None:
        self.client = client
        token = client.post("/auth/token", json={"username": user, "password": password})
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=self.headers)
        response.raise_for_status()
        return response.json()

    def dags(self) -> dict[str, bool]:
        """dag_id -> is_paused, as the dag-processor stored them."""
        return {d["dag_id"]: bool(d["is_paused"]) for d in self.get("/api/v2/dags", limit=100)["dags"]}

    def import_errors(self) -> dict[str, str]:
        errors = self.get("/api/v2/importErrors", limit=100)["import_errors"]
        return {e["filename"]: e["stack_trace"] for e in errors}
