"""Reasons: structured records, made into one line of text in one place."""

from __future__ import annotations

from mlk8s.scaling import ResourceDemand
from mlk8s.scaling.reasons import (
    CappedAtMax,
    Counts,
    DemandSummary,
    Hold,
    HoldForWindow,
    HoldWarm,
    Need,
    PendingTooLong,
    RayPending,
    ScaleDown,
    ScaleUp,
    Unplaceable,
    WarmPool,
    describe,
)
from mlk8s.scaling.warm_pool import WarmLevel


def test_a_decision_reads_as_its_action_then_what_it_rests_on() -> None:
    pending = DemandSummary.of([ResourceDemand(cpus=1, count=10), ResourceDemand(cpus=2, gpus=1, count=2)])
    assert pending == DemandSummary(count=12, cpus=14, gpus=2)
    text = describe(
        [ScaleUp(2, 5), Counts(2, 2, 0, 0), RayPending(pending), Need(need=5, busy=2, new=3, grace=0), CappedAtMax(5)]
    )
    assert text == (
        "scale up 2 -> 5; 2 worker(s): 2 busy, 0 idle, 0 pending; Ray pending 12 request(s), 14 CPU, 2 GPU; "
        "need 5 = 2 busy + 3 new; capped at max_workers=5"
    )


def test_scale_down_and_hold_say_what_the_window_kept() -> None:
    down = ScaleDown(6, 4, ("cpu-5", "cpu-6"), above_max=False, asked=0, window_s=60.0)
    assert (
        describe([down])
        == "scale down 6 -> 4, removing cpu-5, cpu-6 (the backlog asked for at most 0 beyond the busy in the last 60 s)"
    )
    assert describe([ScaleDown(3, 2, ("a",), above_max=True, asked=0, window_s=60.0)]).endswith("(above max_workers)")
    hold = HoldForWindow(current=6, recommended=4, asked=2, busy=4, window_s=60.0)
    assert (
        describe([hold])
        == "hold 6: need 4 now, but the backlog asked for 2 beyond the 4 busy within the last 60 s (scale-down window)"
    )
    assert describe([Hold(3)]) == "hold 3"


def test_grace_pending_pods_and_unplaceable_work_are_named() -> None:
    assert Need(need=3, busy=1, new=3, grace=1).text() == "need 3 = 1 busy + 3 new - 1 grace"
    assert PendingTooLong(2, "cpu-2", 400.2, 300.0).text() == (
        "not growing past 2: pod cpu-2 Pending 400 s > pending_timeout_s=300"
    )
    assert "fit no group" in Unplaceable(DemandSummary(1, 64, 0)).text()


def test_the_warm_pool_says_which_level_it_kept_or_released_and_why() -> None:
    kept = WarmPool(kept=2, window_kept=1, verdicts=(WarmLevel(2, 100.0, 29.4, 30.0, 5),), cold_start_cost_s=60.0)
    assert kept.text() == (
        "warm pool keeps to 2 (window: 1): level 2 idle 29 s < keep-alive 30 s (5 gaps); "
        "ski rental at 60 s per cold start"
    )
    gone = WarmPool(kept=0, window_kept=1, verdicts=(WarmLevel(1, 0.0, 12.0, 0.0, 16),), cold_start_cost_s=60.0)
    assert gone.text().startswith("warm pool releases to 0 (window: 1): level 1 idle 12 s >= keep-alive 0 s")
    assert HoldWarm(current=3, recommended=1, busy=1).text() == (
        "hold 3: need 1 now, but the warm pool keeps 2 idle for work that came back soon before"
    )
