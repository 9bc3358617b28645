"""The warm pool's learning rule and its keep/release verdicts, as pure functions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlk8s.scaling.warm_pool import GAPS_KEPT, MIN_GAPS, LevelHistory, judge, keep_alive_s, observe, warm_keep


def test_a_level_no_longer_wanted_starts_a_gap_and_one_wanted_again_records_it() -> None:
    levels = observe((), wanted=2, now=0.0)
    assert levels == (LevelHistory(None, ()), LevelHistory(None, ()))
    levels = observe(levels, wanted=1, now=10.0)  # level 2 goes unwanted at 10
    assert levels == (LevelHistory(None, ()), LevelHistory(10.0, ()))
    levels = observe(levels, wanted=0, now=25.0)
    assert levels == (LevelHistory(25.0, ()), LevelHistory(10.0, ()))
    levels = observe(levels, wanted=2, now=70.0)  # both wanted again: gaps of 45 s and 60 s
    assert levels == (LevelHistory(None, (45.0,)), LevelHistory(None, (60.0,)))


def test_observing_the_same_demand_again_changes_nothing() -> None:
    levels = observe(observe((), wanted=3, now=0.0), wanted=1, now=5.0)
    assert observe(levels, wanted=1, now=50.0) == levels
    assert observe(observe(levels, wanted=1, now=20.0), wanted=3, now=60.0) == observe(levels, wanted=3, now=60.0)


def test_only_the_latest_gaps_are_kept() -> None:
    levels: tuple[LevelHistory, ...] = ()
    for i in range(GAPS_KEPT + 5):
        levels = observe(levels, wanted=1, now=100.0 * i)
        levels = observe(levels, wanted=0, now=100.0 * i + 50.0 + i)  # unwanted for 50 - i s
    levels = observe(levels, wanted=1, now=100.0 * (GAPS_KEPT + 5))
    gaps = levels[0].gaps
    assert len(gaps) == GAPS_KEPT
    assert gaps[-1] == pytest.approx(50.0 - (GAPS_KEPT + 4))  # the newest last


@pytest.mark.parametrize(
    ("gaps", "cost", "expected"),
    [
        ((), 60.0, 0.0),  # nothing seen: no keep-alive
        ((20.0, 30.0, 25.0), 60.0, 30.0),  # work always came back sooner than a cold start costs: cover all
        ((3000.0, 4000.0, 3600.0), 60.0, 0.0),  # it never did: let the worker go at once
        # Sessions and pauses: keeping 50 s covers the session gaps for 120 s of idle time and pays one cold
        # start (50 + 60) for the pause: 230, the least of cost(0)=240, cost(30)=300, cost(40)=270, 3120.
        ((30.0, 40.0, 50.0, 3000.0), 60.0, 50.0),
        ((60.0, 60.0, 60.0), 60.0, 0.0),  # a tie between keeping and restarting: the shorter keep-alive
    ],
)
def test_the_keep_alive_is_the_one_that_would_have_cost_least(
    gaps: tuple[float, ...], cost: float, expected: float
) -> None:
    assert keep_alive_s(gaps, cost) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e5), min_size=1, max_size=GAPS_KEPT), st.floats(0, 1e4), st.floats(0, 2e5))
def test_no_other_keep_alive_costs_less_over_the_gaps(gaps: list[float], cost: float, other: float) -> None:
    def total(k: float) -> float:
        return sum(min(g, k) + (cost if g > k else 0.0) for g in gaps)

    best = keep_alive_s(gaps, cost)
    assert best == 0.0 or best in gaps
    assert total(best) <= total(other) + 1e-6 * (1 + total(other))


def test_a_level_with_too_few_gaps_gets_no_verdict() -> None:
    few = (LevelHistory(0.0, (10.0,) * (MIN_GAPS - 1)),)
    assert judge(few, 1, now=5.0, cold_start_cost_s=60.0) is None
    assert judge(few, 2, now=5.0, cold_start_cost_s=60.0) is None  # a level never seen


def test_an_idle_level_is_kept_until_its_keep_alive_passes_then_released() -> None:
    levels = (LevelHistory(100.0, (20.0, 30.0, 25.0)),)
    kept = judge(levels, 1, now=129.0, cold_start_cost_s=60.0)
    assert kept is not None and kept.keep and (kept.idle_s, kept.keep_alive_s) == (29.0, 30.0)
    assert kept.release_at == 130.0
    gone = judge(levels, 1, now=130.0, cold_start_cost_s=60.0)
    assert gone is not None and not gone.keep and gone.release_at is None


def test_a_wanted_level_is_kept_and_has_no_release_time() -> None:
    verdict = judge((LevelHistory(None, (5.0, 5.0, 5.0)),), 1, now=1e9, cold_start_cost_s=60.0)
    assert verdict is not None and verdict.keep and verdict.idle_s == 0 and verdict.release_at is None


def test_a_level_whose_work_comes_back_late_is_released_at_once() -> None:
    verdict = judge((LevelHistory(500.0, (4000.0, 5000.0, 4500.0)),), 1, now=500.0, cold_start_cost_s=60.0)
    assert verdict is not None and verdict.keep_alive_s == 0 and not verdict.keep
    assert math.isclose(verdict.idle_s, 0.0)


def test_warm_keep_keeps_learnt_levels_by_their_keep_alive_and_others_by_the_window() -> None:
    short = LevelHistory(100.0, (20.0, 30.0, 25.0))  # work came back within 30 s: keep-alive 30 s
    late = LevelHistory(100.0, (4000.0, 5000.0, 4500.0))  # it came back an hour later: keep-alive 0
    unknown = LevelHistory(100.0, (20.0,))  # too few gaps: the window decides
    # One busy worker (level 1), idle ones at levels 2-4; the window alone would keep up to level 3.
    keep = warm_keep(
        (LevelHistory(None, ()), short, late, unknown),
        busy=1,
        current=4,
        window_kept=3,
        now=110.0,
        cold_start_cost_s=60.0,
    )
    assert keep.kept == 2  # level 2 kept (idle 10 s < 30 s), level 3 released (0 s keep-alive), 4 beyond the window
    assert [v.level for v in keep.verdicts] == [3]  # only where the warm pool overruled the window
    assert keep.release_at == 130.0
    # With nothing learnt, the window alone decides.
    assert warm_keep((), busy=1, current=4, window_kept=3, now=110.0, cold_start_cost_s=60.0).kept == 3
