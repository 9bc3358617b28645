"""Retries of calls to other services (the Kubernetes API, Airflow's REST API): tenacity, honouring Retry-After.

The caller says what is worth retrying; the wait is exponential (``backoff_s``, doubling) unless the server said
how long to wait (a ``Retry-After`` header on a 429 or 503, in seconds or as an HTTP date), which wins, capped at
``max_wait_s``. The last error propagates unchanged, so the caller reports what really went wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import tenacity

log = logging.getLogger(__name__)

#: The longest a server's Retry-After is followed before the call is tried again anyway.
MAX_WAIT_S = 60.0


def _headers_of(exc: BaseException) -> Mapping[str, str] | None:
    headers = getattr(exc, "headers", None)  # kubernetes.client.ApiException
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)  # httpx.HTTPStatusError and ours
    return headers if isinstance(headers, Mapping) or hasattr(headers, "get") else None


def retry_after_s(exc: BaseException | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``), or None when it did not say."""
    headers = _headers_of(exc) if exc is not None else None
    if headers is None:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class WaitRetryAfter(tenacity.wait.wait_base):
    """The server's Retry-After when it sent one, else exponential backoff."""

    def __init__(self, backoff_s: float, max_wait_s: float = MAX_WAIT_S) -> None:
        self.fallback = tenacity.wait_exponential(multiplier=backoff_s, min=0, max=max_wait_s)
        self.max_wait_s = max_wait_s

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = retry_after_s(outcome.exception() if outcome is not None else None)
        if asked is not None:
            return min(asked, self.max_wait_s)
        return float(self.fallback(retry_state))


def retrying(
    what: str,
    *,
    attempts: int,
    backoff_s: float,
    retryable: Callable[[BaseException], bool],
    sleep: Callable[[float], Any] = time.sleep,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for ``what`` (named in the log line of each retry)."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("%s failed (attempt %d/%d): %s; retrying", what, state.attempt_number, attempts, exc)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=WaitRetryAfter(backoff_s),
        retry=tenacity.retry_if_exception(retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
