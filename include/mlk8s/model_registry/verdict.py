"""Is the candidate not worse than the published model? A pure decision over plain metrics."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass


class Goal(enum.StrEnum):
    """Whether a larger value of the metric is better (accuracy) or a smaller one (loss)."""

    MAX = "max"
    MIN = "min"


@dataclass(frozen=True)
class Verdict:
    publish: bool
    reason: str

    @property
    def decision(self) -> str:
        return "publish" if self.publish else "keep"


def _value(metrics: Mapping[str, float | None] | None, metric: str) -> float | None:
    raw = (metrics or {}).get(metric)
    if raw is None:
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def decide(
    *,
    metric: str,
    goal: Goal,
    tolerance: float,
    candidate: Mapping[str, float | None],
    published: Mapping[str, float | None] | None,
    same_weights: bool = False,
    incomparable: str | None = None,
    force: bool = False,
) -> Verdict:
    """Publish when no model is live, when the candidate is the live model already, or when its ``metric`` on
    the same held-out rows is at least as good as the live model's (within ``tolerance``); keep otherwise.

    ``published`` is None when no model is live. ``incomparable`` says why the live model could not be scored
    on this data (other classes, other shapes): then the live model is kept unless ``force``.
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    new = _value(candidate, metric)
    if force:
        return Verdict(True, f"forced: published without comparing ({metric}={new})")
    if new is None:
        return Verdict(False, f"the candidate has no finite {metric}; the live model stays")
    if published is None and incomparable is None:
        return Verdict(True, f"no model is published yet; the candidate ({metric}={new:.4f}) goes live")
    if same_weights:
        return Verdict(True, "the candidate is the live model already (same weights)")
    if incomparable is not None:
        return Verdict(
            False,
            f"the live model cannot be scored on this data ({incomparable}); it stays live. Trigger with "
            "force_publish=true to replace it",
        )
    old = _value(published, metric)
    if old is None:
        return Verdict(True, f"the live model has no finite {metric}; the candidate ({new:.4f}) replaces it")
    better = new >= old - tolerance if goal is Goal.MAX else new <= old + tolerance
    relation = "not worse than" if better else "worse than"
    direction = "higher" if goal is Goal.MAX else "lower"
    return Verdict(
        better,
        f"candidate {metric}={new:.4f} is {relation} the live model's {old:.4f} ({direction} is better, "
        f"tolerance {tolerance:g})",
    )
