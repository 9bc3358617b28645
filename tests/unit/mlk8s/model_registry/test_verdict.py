"""The publish-or-keep decision over plain metrics."""

from __future__ import annotations

import math

import pytest

from mlk8s.model_registry.verdict import Goal, decide

ACC = "held_out_accuracy"


def verdict(candidate: float | None, live: float | str | None = "none", **kw: object):
    published = None if live == "none" else {ACC: live}
    args = {"metric": ACC, "goal": Goal.MAX, "tolerance": 0.0, "candidate": {ACC: candidate}, "published": published}
    args.update(kw)
    return decide(**args)  # type: ignore[arg-type]


def test_nothing_live_publishes() -> None:
    v = verdict(0.5)
    assert v.publish and v.decision == "publish" and "no model is published yet" in v.reason


def test_better_and_equal_publish_worse_keeps() -> None:
    assert verdict(0.9, 0.8).publish
    assert verdict(0.8, 0.8).publish  # "not worse" includes equal
    worse = verdict(0.7, 0.8)
    assert not worse.publish and worse.decision == "keep"
    assert "0.7000 is worse than the live model's 0.8000" in worse.reason


def test_tolerance_allows_a_small_loss() -> None:
    assert verdict(0.79, 0.8, tolerance=0.02).publish
    assert not verdict(0.77, 0.8, tolerance=0.02).publish


def test_min_goal_prefers_lower_values() -> None:
    assert verdict(0.2, 0.3, goal=Goal.MIN).publish
    lost = verdict(0.4, 0.3, goal=Goal.MIN)
    assert not lost.publish and "lower is better" in lost.reason


@pytest.mark.parametrize("bad", [None, math.nan, math.inf])
def test_a_candidate_without_a_finite_metric_is_kept_out(bad: float | None) -> None:
    v = verdict(bad, 0.5)
    assert not v.publish and "no finite held_out_accuracy" in v.reason


def test_a_live_model_without_a_finite_metric_is_replaced() -> None:
    assert verdict(0.5, None).publish


def test_same_weights_publish_as_a_no_op() -> None:
    v = verdict(0.1, 0.9, same_weights=True)
    assert v.publish and "live model already" in v.reason


def test_an_incomparable_live_model_stays_unless_forced() -> None:
    kept = verdict(0.9, "none", published={}, incomparable="other classes")
    assert not kept.publish and "other classes" in kept.reason and "force_publish=true" in kept.reason
    assert verdict(0.1, 0.9, force=True).publish


@pytest.mark.parametrize("tolerance", [-0.1, math.nan])
def test_bad_tolerance_is_refused(tolerance: float) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        verdict(0.5, 0.5, tolerance=tolerance)
