"""Airflow's REST API as the admin, and what the browser tests know of the local Airflow they run against."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN = "admin"


class AirflowApi:
    """Airflow's REST API as the admin: what the tests check the browser's work against."""

    def __init__(self, url: str, password: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30.0)
        token = self.client.post("/auth/token", json={"username": ADMIN, "password": password})
        token.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(f"/api/v2/{path}", params=params)
        response.raise_for_status()
        return response.json()

    def trigger(self, dag_id: str, conf: dict[str, Any], *, in_the_schedules_slot: bool = False) -> str:
        """Start a run. ``in_the_schedules_slot``: at the logical date the scheduler would run next, so that
        unpausing a scheduled DAG starts no catch-up run of its own beside this one (catchup=False schedules
        the latest interval on unpause)."""
        logical_date = None
        if in_the_schedules_slot:
            logical_date = self.get(f"dags/{dag_id}")["next_dagrun_logical_date"]
        response = self.client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf})
        self.client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        assert response.status_code == 200, response.text
        return str(response.json()["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"dags/{dag_id}/dagRuns", order_by="-run_after")["dag_runs"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float) -> str:
        """The run's final state; fails the test with the task states when it does not end in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.get(f"dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return str(state)
            if time.monotonic() > deadline:
                tis = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
                pytest.fail(
                    f"{dag_id} {run_id} still {state} after {timeout_s:.0f} s: "
                    + ", ".join(f"{t['task_id']}={t['state']}" for t in tis)
                )
            time.sleep(3)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path, deserialize=True)["value"]


@dataclass(frozen=True)
class LocalAirflow:
    url: str
    password: str
    home: Path
    started_in_s: float
    api: AirflowApi
