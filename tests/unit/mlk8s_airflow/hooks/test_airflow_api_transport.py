"""Retries and errors of the REST-API reader at the HTTP edge (the happy path runs against the real API app
in tests/integration/test_ray_pool_airflow_api.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from mlk8s_airflow.hooks.airflow_api import AirflowApiError, AirflowApiHook


def hook(monkeypatch: pytest.MonkeyPatch, handler: object, conn: dict[str, object] | None = None) -> AirflowApiHook:
    conn = conn or {"conn_type": "http", "host": "http://api:8080", "login": "u", "password": "secret-pw"}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_UNIT", json.dumps(conn))
    client = httpx.Client(base_url="http://api:8080", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return AirflowApiHook("airflow_api_unit", attempts=3, backoff_s=0.0, client=client)


def test_server_errors_are_retried_then_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        if len([c for c in calls if c != "/auth/token"]) < 3:
            return httpx.Response(503)
        assert request.headers["Authorization"] == "Bearer tok"
        return httpx.Response(200, json={"total_entries": 4, "task_instances": []})

    assert hook(monkeypatch, handler).count_task_instances("ray", ["queued"]) == {"queued": 4}
    assert calls.count("/api/v2/dags/~/dagRuns/~/taskInstances") == 3


def test_server_errors_past_the_retries_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        return httpx.Response(500)

    with pytest.raises(Exception, match="500"):
        hook(monkeypatch, handler).count_task_instances("ray", ["queued"])


def test_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        return httpx.Response(422, json={"detail": "bad state"})

    with pytest.raises(AirflowApiError, match="422"):
        hook(monkeypatch, handler).count_task_instances("ray", ["nonsense"])
    assert calls.count("/api/v2/dags/~/dagRuns/~/taskInstances") == 1


def test_connection_without_credentials_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "http", "host": "http://api:8080"}
    with pytest.raises(AirflowApiError, match="needs login and password of an Airflow API user"):
        hook(monkeypatch, lambda r: httpx.Response(200), conn).count_task_instances("ray")


def test_missing_connection_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Exception, match="airflow_api_nowhere"):
        AirflowApiHook("airflow_api_nowhere").count_task_instances("ray")


def test_a_429_waits_as_long_as_the_server_says(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={"total_entries": 1})]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        return answers.pop(0)

    conn = {"conn_type": "http", "host": "http://api:8080", "login": "u", "password": "secret-pw"}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_UNIT", json.dumps(conn))
    client = httpx.Client(base_url="http://api:8080", transport=httpx.MockTransport(handler))
    sleeps: list[float] = []
    api = AirflowApiHook("airflow_api_unit", attempts=3, backoff_s=0.5, client=client, sleep=sleeps.append)
    assert api.count_task_instances("ray", ["queued"]) == {"queued": 1}
    assert sleeps == [3.0]
