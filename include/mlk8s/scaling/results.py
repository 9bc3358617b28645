"""The figures of one replay: worker-hours, queue waits and scale events, and their JSON form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class RunResult:
    """The figures of one replay (see the simulator's ``--help`` for each field)."""

    worker_hours: float
    gpu_worker_hours: float
    p50: float
    p95: float
    max: float
    scale_events: int
    makespan_s: float
    peak_workers: int

    def to_json(self) -> dict[str, Any]:
        return {
            "worker_hours": round(self.worker_hours, 3),
            "gpu_worker_hours": round(self.gpu_worker_hours, 3),
            "queue_wait_s": {"p50": round(self.p50, 2), "p95": round(self.p95, 2), "max": round(self.max, 2)},
            "scale_events": self.scale_events,
            "makespan_s": round(self.makespan_s, 1),
            "peak_workers": self.peak_workers,
        }
