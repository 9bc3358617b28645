"""The adaptive warm pool: learn how long each level of a group sits unwanted, and keep idle workers by ski rental.

A group's *level* k is its k-th worker: the level is wanted while the demand (busy workers plus the new ones
the waiting work needs, ``min_workers`` included) asks for at least k workers. Each time a level is wanted
again after a spell unwanted, that spell is one observed *idle gap*: how long a worker kept at that level
would have sat idle before work came back for it. Gaps are observed from the demand alone, so they are the
same whether the policy kept the worker or let it go.

Keeping an idle worker is renting; letting it go and starting a new one when work comes back is buying: a cold
start costs ``cold_start_cost_s`` idle-worker-seconds (the new pod billed while it starts, plus the next
task's wait for it, counted as worker time). With the level's recent gaps as the forecast, the keep-alive is
the time that minimises the total over those gaps of the idle time paid plus a cold start for each gap longer
than it (:func:`keep_alive_s`): a level whose work comes back within minutes stays warm; one that goes quiet for
hours is released at once, sooner than the scale-down window would. Short waits at a trickle's rate, fewer
worker-hours than a fixed idle timeout: both come from the same rule. Until a level has
:data:`MIN_GAPS` gaps, the scale-down window alone decides for it.

Written here: this is a few lines of arithmetic over a dozen numbers per level, run inside the pure policy;
no library fits that without pulling in far more than it gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The idle gaps remembered per level (the most recent ones): enough to see a pattern, few enough to follow
#: a change of pace within an hour or so at trickle rates, and to keep the JSON state small.
GAPS_KEPT = 16

#: Gaps a level needs before its keep-alive is used; with fewer, the scale-down window decides.
MIN_GAPS = 3


@dataclass(frozen=True)
class LevelHistory:
    """What the warm pool knows of one level: since when it is unwanted (None: wanted now) and its recent gaps.

    ``gaps`` are oldest first, at most :data:`GAPS_KEPT`.
    """

    unwanted_since: float | None = None
    gaps: tuple[float, ...] = ()


def observe(levels: Sequence[LevelHistory], wanted: int, now: float) -> tuple[LevelHistory, ...]:
    """The learning step at one decision: levels up to ``wanted`` are wanted now, the ones above are not.

    A level wanted again ends its gap (recorded); a level no longer wanted starts one. Calling again with the
    same ``wanted`` changes nothing, so a caller may skip calls while its inputs stay the same.
    """
    out: list[LevelHistory] = []
    for k in range(1, max(len(levels), wanted) + 1):
        level = levels[k - 1] if k <= len(levels) else LevelHistory(unwanted_since=None)
        if k <= wanted:
            if level.unwanted_since is not None:
                gap = max(0.0, now - level.unwanted_since)
                level = LevelHistory(None, (*level.gaps, gap)[-GAPS_KEPT:])
        elif level.unwanted_since is None:
            level = LevelHistory(now, level.gaps)
        out.append(level)
    return tuple(out)


def keep_alive_s(gaps: Sequence[float], cold_start_cost_s: float) -> float:
    """The keep-alive that would have cost least over ``gaps``: ski rental with the gaps as the forecast.

    Keeping a worker idle for up to K seconds costs ``min(gap, K)`` per gap, plus ``cold_start_cost_s`` for
    each gap longer than K (the worker went, and work came back to a cold start). The best K is 0 or one of
    the gaps (the cost is linear between them); ties go to the shorter keep-alive.
    """
    ordered = sorted(gaps)
    n = len(ordered)
    best_k, best_cost = 0.0, n * cold_start_cost_s
    covered = 0.0  # sum of the gaps up to and including this one
    for i, k in enumerate(ordered):
        covered += k
        longer = n - i - 1
        cost = covered + longer * (k + cold_start_cost_s)
        if cost < best_cost:
            best_k, best_cost = k, cost
    return best_k


@dataclass(frozen=True)
class WarmLevel:
    """The warm pool's verdict on one level: keep it (idle for ``idle_s`` of ``keep_alive_s``) or not.

    ``unwanted_since`` is None while the level is wanted (kept, idle for 0 s).
    """

    level: int
    unwanted_since: float | None
    idle_s: float
    keep_alive_s: float
    gaps: int

    @property
    def keep(self) -> bool:
        return self.idle_s < self.keep_alive_s

    @property
    def release_at(self) -> float | None:
        """When a kept, unwanted level goes: once its idle time reaches the keep-alive."""
        if self.unwanted_since is None or not self.keep:
            return None
        return self.unwanted_since + self.keep_alive_s


def judge(levels: Sequence[LevelHistory], level: int, now: float, cold_start_cost_s: float) -> WarmLevel | None:
    """The verdict on ``level`` (1-based), or None when it has too few gaps for one (the window decides)."""
    if level > len(levels):
        return None
    history = levels[level - 1]
    if len(history.gaps) < MIN_GAPS:
        return None
    idle_s = 0.0 if history.unwanted_since is None else max(0.0, now - history.unwanted_since)
    keep_alive = keep_alive_s(history.gaps, cold_start_cost_s)
    return WarmLevel(level, history.unwanted_since, idle_s, keep_alive, len(history.gaps))


@dataclass(frozen=True)
class WarmKeep:
    """How many workers stay (busy ones included), the verdicts where the warm pool decided otherwise than
    the window, and when the next kept idle level is due to go (None: none is)."""

    kept: int
    verdicts: tuple[WarmLevel, ...]
    release_at: float | None


def warm_keep(
    levels: Sequence[LevelHistory], busy: int, current: int, window_kept: int, now: float, cold_start_cost_s: float
) -> WarmKeep:
    """Each idle level (``busy < k <= current``) with enough history is kept while its idle time is within its
    keep-alive; one without is kept as the window says (``k <= window_kept``). Pass no levels to let the
    window decide alone."""
    kept = busy
    verdicts: list[WarmLevel] = []
    releases: list[float] = []
    for k in range(busy + 1, current + 1):
        verdict = judge(levels, k, now, cold_start_cost_s)
        if verdict is None:
            if k <= window_kept:
                kept = k
            continue
        if verdict.keep:
            kept = k
        if verdict.keep != (k <= window_kept):
            verdicts.append(verdict)
        if verdict.release_at is not None:
            releases.append(verdict.release_at)
    return WarmKeep(kept, tuple(verdicts), min(releases, default=None))
