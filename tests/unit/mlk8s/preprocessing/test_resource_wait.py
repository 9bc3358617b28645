"""The bounded wait for a step whose resources fit no Ray node: which demands fit, and the stop it raises in the
main thread after the wait (while the main thread is busy, as it is inside Ray Data)."""

from __future__ import annotations

import time

import pytest

from mlk8s.preprocessing.errors import ResourceWaitError
from mlk8s.preprocessing.resource_wait import ResourceWatch, step_demands, unfit
from mlk8s.preprocessing.spec import parse_spec

USER = "tests.unit.mlk8s.preprocessing.user_transforms"
SPEC = parse_spec({"steps": ["clean_text", {"use": f"{USER}.Tagger", "num_cpus": 8, "num_gpus": 1}]})


def test_only_explicit_actor_requests_are_watched_and_a_node_must_hold_all_of_one() -> None:
    demands = step_demands(SPEC)
    assert [(s.index, d) for s, d in demands] == [(1, {"CPU": 8.0, "GPU": 1.0})]
    assert unfit(demands, [{"CPU": 16.0}, {"CPU": 2.0, "GPU": 1.0}]) == demands  # no single node has both
    assert unfit(demands, [{"CPU": 8.0, "GPU": 4.0}]) == []
    assert step_demands(parse_spec({"steps": ["clean_text", f"{USER}.Tagger"]})) == []


def test_the_wait_ends_with_one_line_naming_the_step() -> None:
    with pytest.raises(ResourceWaitError, match=r"steps\[1\] \(.*Tagger\) asks for CPU=8, GPU=1 .* waited 0.3 s"):
        with ResourceWatch(SPEC, 0.3, poll_s=0.05, nodes=lambda: [{"CPU": 2.0}]):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the main thread at work, as in Ray Data's loop
                time.sleep(0.01)


def test_a_node_that_arrives_in_time_lets_the_job_go_on() -> None:
    pool = [{"CPU": 2.0}]
    with ResourceWatch(SPEC, 0.5, poll_s=0.05, nodes=lambda: pool):
        pool.append({"CPU": 8.0, "GPU": 1.0})
        time.sleep(1.0)
