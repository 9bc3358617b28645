"""Waits end when ready, fail at once when the component died, and time out naming what is missing."""

from __future__ import annotations

import pytest
from local_airflow.readiness import NotReady, unhealthy, wait_until

HEALTHY = {"status": "healthy"}


def test_unhealthy_names_each_component_not_reported_healthy() -> None:
    report = {"metadatabase": HEALTHY, "scheduler": HEALTHY, "triggerer": {"status": "unhealthy"}}
    assert unhealthy(report) == ["triggerer", "dag_processor"]
    assert unhealthy({k: HEALTHY for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")}) == []


def test_wait_returns_when_ready() -> None:
    answers = iter(["starting", None])
    wait_until(lambda: next(answers), timeout_s=10, what="x", died=lambda: None)


def test_a_dead_component_fails_the_wait_at_once() -> None:
    with pytest.raises(NotReady, match="scheduler exited"):
        wait_until(lambda: "never", timeout_s=60, what="x", died=lambda: "scheduler exited")


def test_the_timeout_says_what_was_missing() -> None:
    with pytest.raises(NotReady, match="Airflow not ready after 1 s: not healthy yet: triggerer"):
        wait_until(lambda: "not healthy yet: triggerer", timeout_s=1, what="Airflow", died=lambda: None)
