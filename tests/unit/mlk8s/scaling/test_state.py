"""The policy's state: a JSON round trip that gives the same decisions, a fresh start, and refused JSON."""

from __future__ import annotations

import json

import pytest

from mlk8s.scaling import (
    DecisionRequest,
    PolicyInputError,
    PolicyState,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
    decide,
)
from mlk8s.scaling.warm_pool import LevelHistory

CPU = WorkerGroupSpec("cpu", min_workers=0, max_workers=10, cpus_per_worker=4)


def test_state_survives_a_json_round_trip_and_gives_the_same_decisions() -> None:
    workers = [
        Worker(id="cpu-1", group="cpu", busy=True, started_at=0.0),
        Worker(id="cpu-2", group="cpu", busy=False, started_at=0.0, idle_since=0.0),
    ]
    first = decide(DecisionRequest(0.0, [CPU], workers, [QueueSnapshot()], [ResourceDemand(cpus=1, count=9)]))
    carried = PolicyState.from_json(json.loads(json.dumps(first.state.to_json())))
    assert carried == first.state
    later = DecisionRequest(30.0, [CPU], workers, [QueueSnapshot()], [], state=carried)
    assert decide(later) == decide(DecisionRequest(30.0, [CPU], workers, [QueueSnapshot()], [], state=first.state))


def test_fresh_state_from_none_or_empty() -> None:
    assert PolicyState.from_json(None) == PolicyState()
    assert PolicyState.from_json({}) == PolicyState()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"version": 99}, ["version", "to_json"]),
        ({"version": 1, "recommendations": {"cpu": [[0, -1]]}}, ["workers>=0"]),
        ({"version": 1, "recommendations": [1, 2]}, ["recommendations", "map group name"]),
        ([1, 2], ["version None"]),
        ({"version": 2, "levels": {"cpu": [[None, [-1.0]]]}}, ["levels['cpu']", "gap_s >= 0"]),
        ({"version": 2, "levels": {"cpu": [["soon", []]]}}, ["unwanted_since_s or null"]),
        ({"version": 2, "levels": {"cpu": [[None, [1.0] * 17]]}}, ["at most 16"]),
        ({"version": 2, "levels": {"cpu": 3}}, ["levels['cpu'] must be a list"]),
    ],
)
def test_bad_state_json_is_refused_with_the_fix(data: dict[str, object], words: list[str]) -> None:
    with pytest.raises(PolicyInputError) as err:
        PolicyState.from_json(data)
    for word in words:
        assert word in str(err.value)


def test_what_the_warm_pool_learnt_survives_the_json_round_trip() -> None:
    state = PolicyState(
        recommendations={"cpu": ((0.0, 1),)},
        levels={"cpu": (LevelHistory(None, (30.0, 45.5)), LevelHistory(1.7e9, ()))},
    )
    data = json.loads(json.dumps(state.to_json()))
    assert data["version"] == 2
    assert PolicyState.from_json(data) == state
