"""Read the Ray pool's queue from Airflow 3's REST API, never from the metadata database.

Task code and triggers in Airflow 3 have no database session; the REST API (``/api/v2``) is the supported
way to see task instances across DAG runs. Credentials come from an Airflow Connection (host = the API
server's base URL, login/password = a user of the auth manager); the hook trades them for a JWT at
``/auth/token`` and renews it on a 401. Connection errors, 5xx and 429 are retried with tenacity
(:mod:`mlk8s_airflow.retries`, honouring Retry-After); other 4xx answers are errors at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import httpx
from airflow.sdk import BaseHook

from mlk8s_airflow.retries import retrying

#: Task instance states that mean "this work is waiting for or using the Ray pool".
QUEUE_STATES: tuple[str, ...] = ("scheduled", "queued", "running", "deferred")


class AirflowApiError(RuntimeError):
    """The API answered with an error that a retry will not fix (bad credentials, unknown pool)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class PoolSlots:
    """An Airflow pool as the API reports it: slots are weighted by each task's ``pool_slots``."""

    name: str
    slots: int  # -1 means unlimited
    open_slots: int
    occupied_slots: int
    running_slots: int
    queued_slots: int
    scheduled_slots: int
    deferred_slots: int


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Transient(Exception):
    """A 5xx or 429 answer: worth retrying (after the server's Retry-After, if it sent one)."""

    def __init__(self, message: str, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Transient | httpx.TransportError)


class AirflowApiHook(BaseHook):
    """Counts the task instances of one Airflow pool by state, and reads the pool's slots.

    :param airflow_api_conn_id: Connection with ``host`` = API base URL (``http://host:8080``; a path
        prefix is kept), ``login``/``password`` = an API user. ``extra`` may set ``timeout_s``.
    """

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = "airflow_api_default"
    conn_type = "http"
    hook_name = "Airflow REST API (mlk8s)"

    def __init__(
        self,
        airflow_api_conn_id: str = default_conn_name,
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        client: httpx.Client | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        super().__init__()
        self._sleep = sleep
        self.airflow_api_conn_id = airflow_api_conn_id
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._client = client
        self._token: str | None = None

    @cached_property
    def _settings(self) -> tuple[str, str, str, float]:
        conn = self.get_connection(self.airflow_api_conn_id)
        host = (conn.host or "").rstrip("/")
        if not host:
            raise AirflowApiError(
                f"Connection {self.airflow_api_conn_id!r} has no host: set it to the Airflow API server's "
                "base URL, e.g. http://airflow-api-server:8080"
            )
        if "://" not in host:
            scheme = conn.schema or "http"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        if not conn.login or not conn.password:
            raise AirflowApiError(
                f"Connection {self.airflow_api_conn_id!r} needs login and password of an Airflow API user"
            )
        timeout = float(conn.extra_dejson.get("timeout_s", 10.0))
        return host, conn.login, conn.password, timeout

    @property
    def base_url(self) -> str:
        return self._settings[0]

    @cached_property
    def client(self) -> httpx.Client:
        if self._client is not None:
            return self._client
        return httpx.Client(base_url=self.base_url, timeout=self._settings[3])

    def close(self) -> None:
        if self._client is None and "client" in self.__dict__:
            self.client.close()

    # -- transport ---------------------------------------------------------------------------------------

    def _fetch_token(self) -> str:
        _, login, password, _ = self._settings
        response = self.client.post("/auth/token", json={"username": login, "password": password})
        if response.status_code in (401, 403):
            raise AirflowApiError(
                f"Airflow API refused the credentials of connection {self.airflow_api_conn_id!r} "
                f"({response.status_code}); check its login/password",
                response.status_code,
            )
        self._raise_for_status(response)
        token = response.json().get("access_token")
        if not isinstance(token, str):
            raise AirflowApiError("Airflow API /auth/token answered without an access_token")
        return token

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.status_code >= 500 or response.status_code == 429:
            raise _Transient(f"{response.request.method} {response.request.url}: {response.status_code}", response)
        if response.status_code >= 400:
            raise AirflowApiError(
                f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}",
                response.status_code,
            )

    def _get_once(self, path: str, params: Any) -> Any:
        if self._token is None:
            self._token = self._fetch_token()
        response = self.client.get(path, params=params, headers={"Authorization": f"Bearer {self._token}"})
        # Airflow answers an expired or invalid JWT with 401 or 403: renew once; a 403 after that is real.
        if response.status_code in (401, 403):
            self._token = self._fetch_token()
            response = self.client.get(path, params=params, headers={"Authorization": f"Bearer {self._token}"})
        self._raise_for_status(response)
        return response.json()

    def get_json(self, path: str, params: Any = None) -> Any:
        """GET with retries on connection errors, 5xx and 429; 4xx errors are raised at once."""
        policy = retrying(
            f"GET {path}", attempts=self.attempts, backoff_s=self.backoff_s, retryable=_retryable, sleep=self._sleep
        )
        return policy(self._get_once, path, params)

    # -- queries -----------------------------------------------------------------------------------------

    def get_pool_slots(self, pool: str) -> PoolSlots:
        try:
            data = self.get_json(f"/api/v2/pools/{pool}")
        except AirflowApiError as exc:
            if exc.status_code == 404:
                raise AirflowApiError(
                    f"Airflow pool {pool!r} does not exist: create it (Admin > Pools, or "
                    f"`airflow pools set {pool} <slots> <description>`) or set the sensor's pool argument"
                ) from exc
            raise
        return PoolSlots(
            name=data["name"],
            slots=int(data["slots"]),
            open_slots=int(data["open_slots"]),
            occupied_slots=int(data["occupied_slots"]),
            running_slots=int(data["running_slots"]),
            queued_slots=int(data["queued_slots"]),
            scheduled_slots=int(data["scheduled_slots"]),
            deferred_slots=int(data["deferred_slots"]),
        )

    def count_task_instances(self, pool: str, states: Iterable[str] = QUEUE_STATES) -> dict[str, int]:
        """Task instances of ``pool`` per state, across all DAGs and runs (``~``), one cheap query each."""
        counts: dict[str, int] = {}
        for state in states:
            data = self.get_json(
                "/api/v2/dags/~/dagRuns/~/taskInstances",
                params={"pool": pool, "state": state, "limit": 1},
            )
            counts[state] = int(data["total_entries"])
        return counts

    def next_dagrun_times(self, dag_ids: Iterable[str]) -> dict[str, datetime | None]:
        """When each DAG's next run may start (``next_dagrun_run_after``), for pre-warming the pool."""
        result: dict[str, datetime | None] = {}
        for dag_id in dag_ids:
            data: Mapping[str, Any] = self.get_json(f"/api/v2/dags/{dag_id}")
            result[dag_id] = _parse_time(data.get("next_dagrun_run_after"))
        return result
