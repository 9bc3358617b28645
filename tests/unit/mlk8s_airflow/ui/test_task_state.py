"""Task states: which ones may still produce a result (their pages reload themselves)."""

from __future__ import annotations

import pytest

from mlk8s_airflow.ui.task_state import TaskInstanceInfo


@pytest.mark.parametrize(
    ("state", "unfinished"),
    [
        (None, True),
        ("running", True),
        ("deferred", True),
        ("up_for_retry", True),
        ("success", False),
        ("failed", False),
    ],
)
def test_unfinished(state: str | None, unfinished: bool) -> None:
    assert TaskInstanceInfo("d", "r", "t", state=state).unfinished is unfinished
