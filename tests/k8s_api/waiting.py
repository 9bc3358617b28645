"""The bounded wait every test of this server uses: poll until truthy, else fail saying what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float = 30.0,
    what: str | Callable[[], str] = "condition",
    *,
    interval_s: float = 0.05,
    error: type[Exception] = AssertionError,
) -> Any:
    """``predicate()``'s first truthy value; after ``timeout_s`` raise ``error`` naming ``what`` (a str or a
    callable, evaluated only then, so it can describe the state at the time of failure)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise error(f"not reached within {timeout_s:.0f}s: {text}")
        time.sleep(interval_s)
