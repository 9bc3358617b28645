"""The trigger's event protocol: it serializes to itself, runs the loop for its cycles, and reports."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

from mlk8s.scaling import PolicyState
from mlk8s_airflow.ray_pool.loop import CycleResult, RayPoolLoop
from mlk8s_airflow.ray_pool.settings import RayPoolSettings
from mlk8s_airflow.triggers.ray_pool import RayPoolTrigger

CPU = {"name": "cpu", "min_workers": 0, "max_workers": 4, "cpus_per_worker": 2}


def trigger(**overrides: Any) -> RayPoolTrigger:
    settings = RayPoolSettings.parse(
        {"groups": [CPU], "actuator": "local", "ray_address": "127.0.0.1:6379", "interval_s": 0.001}
    ).to_json()
    kwargs: dict[str, Any] = {"settings": settings, "run_key": "d/r/t/1", "cycles_per_event": 3}
    kwargs.update(overrides)
    return RayPoolTrigger(**kwargs)


def run_trigger(t: RayPoolTrigger) -> list[Any]:
    async def collect() -> list[Any]:
        return [event async for event in t.run()]

    return asyncio.run(collect())


def test_trigger_serializes_to_itself() -> None:
    original = trigger(state=PolicyState(recommendations={"cpu": ((1.0, 2),)}).to_json(), seq=7, failures=1)
    classpath, kwargs = original.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert PolicyState.from_json(kwargs["state"]).recommendations == {"cpu": ((1.0, 2),)}


def test_trigger_reports_state_points_and_errors_after_its_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    def cycle(self: RayPoolLoop, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        if seq == 6:
            raise ConnectionError("GCS unreachable")
        new = PolicyState(recommendations={"cpu": ((float(seq), seq),)})
        return CycleResult([], new, {"t": seq, "queued": seq, "running": 0, "pool": 0, "target": 0}, [])

    monkeypatch.setattr(RayPoolLoop, "cycle", cycle)
    (event,) = run_trigger(trigger(seq=4))
    assert event.payload["seq"] == 7
    assert [p["t"] for p in event.payload["points"]] == [5, 7]
    assert [(e["cycle"], e["message"]) for e in event.payload["errors"]] == [(6, "ConnectionError: GCS unreachable")]
    assert PolicyState.from_json(event.payload["state"]).recommendations == {"cpu": ((7.0, 7),)}
    assert event.payload["error"] is None and event.payload["done"] is False and event.payload["failures"] == 0


def test_trigger_gives_up_after_failed_cycles_in_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def cycle(self: RayPoolLoop, state: PolicyState, seq: int, now: float | None = None) -> CycleResult:
        raise ConnectionError("GCS unreachable")

    monkeypatch.setattr(RayPoolLoop, "cycle", cycle)
    (event,) = run_trigger(trigger(cycles_per_event=10, max_failed_cycles=3, failures=1))
    assert event.payload["failures"] == 3
    assert event.payload["seq"] == 2  # the count carried over from the last event counts
    assert "3 ray pool cycles failed in a row; last error: GCS unreachable" in event.payload["error"]


def test_trigger_stops_when_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RayPoolLoop, "cycle", lambda *a, **k: pytest.fail("no cycle after run_until"))
    (event,) = run_trigger(trigger(run_until=1.0))
    assert event.payload["done"] is True and event.payload["points"] == []
