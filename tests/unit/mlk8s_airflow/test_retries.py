"""Retries of calls to other services: what is retried, how long it waits (the server's Retry-After wins), and
that the last error propagates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from kubernetes.client.exceptions import ApiException

from mlk8s_airflow.retries import MAX_WAIT_S, retry_after_s, retrying


class Flaky:
    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def kube_error(status: int, retry_after: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.headers = {"Retry-After": retry_after} if retry_after else {}
    return exc


def test_backoff_doubles_and_the_servers_retry_after_wins() -> None:
    sleeps: list[float] = []
    call = Flaky([kube_error(503), kube_error(503), kube_error(429, "7"), kube_error(503)])
    policy = retrying("read", attempts=5, backoff_s=0.5, retryable=lambda e: True, sleep=sleeps.append)
    assert policy(call) == "ok"
    assert sleeps == [0.5, 1.0, 7.0, 4.0]


def test_retry_after_as_an_http_date_or_too_long() -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    response = httpx.Response(429, headers={"Retry-After": format_datetime(later, usegmt=True)})
    exc = httpx.HTTPStatusError("429", request=httpx.Request("GET", "http://x"), response=response)
    assert 25 <= (retry_after_s(exc) or 0) <= 31
    sleeps: list[float] = []
    policy = retrying("read", attempts=2, backoff_s=0.1, retryable=lambda e: True, sleep=sleeps.append)
    assert policy(Flaky([kube_error(429, "100000")])) == "ok"
    assert sleeps == [MAX_WAIT_S]
    assert retry_after_s(kube_error(429, "soon")) is None and retry_after_s(ValueError()) is None


def test_what_is_not_retryable_or_the_last_error_propagates_unchanged() -> None:
    not_found = kube_error(404)
    call = Flaky([not_found])
    with pytest.raises(ApiException) as raised:
        retrying("read", attempts=5, backoff_s=0, retryable=lambda e: e.status != 404, sleep=lambda s: None)(call)
    assert raised.value is not_found and call.calls == 1
    call = Flaky([kube_error(500)] * 3)
    with pytest.raises(ApiException):
        retrying("read", attempts=3, backoff_s=0, retryable=lambda e: True, sleep=lambda s: None)(call)
    assert call.calls == 3
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        retrying("read", attempts=0, backoff_s=0, retryable=lambda e: True)
