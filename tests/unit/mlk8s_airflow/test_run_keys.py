"""Run keys: safe in paths and partition values, stable for a run, distinct across runs."""

from __future__ import annotations

import re

import pytest

from mlk8s_airflow.run_keys import run_key


def test_a_run_key_is_safe_readable_and_stable() -> None:
    key = run_key("manual__2026-01-02T03:04:05.678901+00:00")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key)
    assert key.startswith("manual__2026-01-02T03-04-05.678901-00-00-")
    assert run_key("manual__2026-01-02T03:04:05.678901+00:00") == key  # a rerun of the run: same data


def test_run_ids_that_differ_only_in_unsafe_characters_get_different_keys() -> None:
    assert run_key("a:b") != run_key("a+b") != run_key("a/b")
    assert run_key("scheduled__2026-01-02T02:00:00+00:00") != run_key("manual__2026-01-02T02:00:00+00:00")


def test_odd_run_ids_still_give_a_key() -> None:
    assert re.fullmatch(r"run-[0-9a-f]{8}", run_key("::::"))
    assert len(run_key("x" * 500)) <= 64 + 9
    with pytest.raises(ValueError, match="run_id is empty"):
        run_key(" ")
