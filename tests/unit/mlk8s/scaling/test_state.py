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
    ],
)
def test_bad_state_json_is_refused_with_the_fix(data: dict[str, object], words: list[str]) -> None:
    with pytest.raises(PolicyInputError) as err:
        PolicyState.from_json(data)
    for word in words:
        assert word in str(err.value)
