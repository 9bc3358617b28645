"""Why the policy decided what it did: one small record per fact, and the one place they become text.

The policy core builds these records (plain data that tests can compare); :func:`describe` turns a decision's
records into the sentence that the sensor logs, the KubeRay annotation carries and the UI shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlk8s.scaling.model import ResourceDemand
from mlk8s.scaling.warm_pool import WarmLevel


@dataclass(frozen=True)
class DemandSummary:
    """Requests of one kind, summed: how many, and the CPUs and GPUs they ask for together."""

    count: int
    cpus: float
    gpus: float

    @classmethod
    def of(cls, requests: Sequence[ResourceDemand]) -> DemandSummary:
        return cls(
            count=sum(r.count for r in requests),
            cpus=sum(r.cpus * r.count for r in requests),
            gpus=sum(r.gpus * r.count for r in requests),
        )

    def text(self) -> str:
        out = f"{self.count} request(s), {self.cpus:g} CPU"
        return out + (f", {self.gpus:g} GPU" if self.gpus else "")


# --- what the group does (always the first record of a decision) ---------------------------------------


@dataclass(frozen=True)
class ScaleUp:
    current: int
    target: int

    def text(self) -> str:
        return f"scale up {self.current} -> {self.target}"


@dataclass(frozen=True)
class ScaleDown:
    """Idle or pending workers removed; ``asked`` is the most the backlog asked for beyond the busy ones
    within the scale-down window (or ``above_max``: the group is above a lowered max_workers)."""

    current: int
    target: int
    remove: tuple[str, ...]
    above_max: bool
    asked: int
    window_s: float

    def text(self) -> str:
        out = f"scale down {self.current} -> {self.target}, removing {', '.join(self.remove)}"
        if self.above_max:
            return out + " (above max_workers)"
        return out + f" (the backlog asked for at most {self.asked} beyond the busy in the last {self.window_s:g} s)"


@dataclass(frozen=True)
class HoldForWindow:
    """Demand alone calls for fewer workers, but the scale-down window (or the warm pool) keeps them."""

    current: int
    recommended: int
    asked: int
    busy: int
    window_s: float

    def text(self) -> str:
        return (
            f"hold {self.current}: need {self.recommended} now, but the backlog asked for {self.asked} "
            f"beyond the {self.busy} busy within the last {self.window_s:g} s (scale-down window)"
        )


@dataclass(frozen=True)
class HoldWarm:
    """Demand alone calls for fewer workers, but the warm pool keeps idle ones (see :class:`WarmPool`)."""

    current: int
    recommended: int
    busy: int

    def text(self) -> str:
        return (
            f"hold {self.current}: need {self.recommended} now, but the warm pool keeps "
            f"{self.current - max(self.busy, self.recommended)} idle for work that came back soon before"
        )


@dataclass(frozen=True)
class Hold:
    current: int

    def text(self) -> str:
        return f"hold {self.current}"


# --- what the decision rests on ------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    current: int
    busy: int
    idle: int
    pending: int

    def text(self) -> str:
        return f"{self.current} worker(s): {self.busy} busy, {self.idle} idle, {self.pending} pending"


@dataclass(frozen=True)
class RayDemandUnknown:
    """Ray's demand could not be read: all of Airflow's tasks stand in for it."""

    airflow: DemandSummary
    need: int

    def text(self) -> str:
        return f"Ray demand unknown: all {self.airflow.text()} of Airflow need {self.need}"


@dataclass(frozen=True)
class RayPending:
    demand: DemandSummary

    def text(self) -> str:
        return f"Ray pending {self.demand.text()}"


@dataclass(frozen=True)
class AirflowBacklog:
    demand: DemandSummary

    def text(self) -> str:
        return f"Airflow backlog {self.demand.text()}"


@dataclass(frozen=True)
class Need:
    """The workers the waiting work needs: the busy ones plus new ones, less the backlog grace."""

    need: int
    busy: int
    new: int
    grace: int

    def text(self) -> str:
        return f"need {self.need} = {self.busy} busy + {self.new} new" + (
            f" - {self.grace} grace" if self.grace else ""
        )


@dataclass(frozen=True)
class Prewarm:
    next_run: float
    need: int

    def text(self) -> str:
        return f"pre-warm for the DAG run at {self.next_run:g}: {self.need}"


@dataclass(frozen=True)
class CappedAtMax:
    max_workers: int

    def text(self) -> str:
        return f"capped at max_workers={self.max_workers}"


@dataclass(frozen=True)
class RaisedToMin:
    min_workers: int

    def text(self) -> str:
        return f"raised to min_workers={self.min_workers}"


@dataclass(frozen=True)
class PendingTooLong:
    """A pod of the group has been Pending past ``pending_timeout_s``: the group stops growing."""

    size: int
    pod: str
    pending_s: float
    timeout_s: float

    def text(self) -> str:
        return (
            f"not growing past {self.size}: pod {self.pod} Pending {self.pending_s:.0f} s "
            f"> pending_timeout_s={self.timeout_s:g}"
        )


@dataclass(frozen=True)
class BusyAboveMax:
    busy: int
    max_workers: int

    def text(self) -> str:
        return f"{self.busy} busy worker(s) exceed max_workers={self.max_workers}; waiting for them"


@dataclass(frozen=True)
class WarmPool:
    """The warm pool kept ``kept`` workers where the window alone would keep ``window_kept``; ``verdicts`` are
    the levels it judged otherwise (each: idle so far, its keep-alive, over how many gaps)."""

    kept: int
    window_kept: int
    verdicts: tuple[WarmLevel, ...]
    cold_start_cost_s: float

    def text(self) -> str:
        levels = ", ".join(
            f"level {v.level} idle {v.idle_s:.0f} s {'<' if v.keep else '>='} keep-alive {v.keep_alive_s:.0f} s"
            f" ({v.gaps} gaps)"
            for v in self.verdicts
        )
        verb = "keeps" if self.kept > self.window_kept else "releases"
        return (
            f"warm pool {verb} to {self.kept} (window: {self.window_kept}): {levels}; "
            f"ski rental at {self.cold_start_cost_s:g} s per cold start"
        )


@dataclass(frozen=True)
class Unplaceable:
    """Demand that fits no group (noted on the first group's decision)."""

    demand: DemandSummary

    def text(self) -> str:
        return f"{self.demand.text()} fit no group (CPU work never goes to GPU groups), not scaling for it"


Reason = (
    ScaleUp
    | ScaleDown
    | HoldForWindow
    | HoldWarm
    | Hold
    | Counts
    | RayDemandUnknown
    | RayPending
    | AirflowBacklog
    | Need
    | Prewarm
    | CappedAtMax
    | RaisedToMin
    | PendingTooLong
    | BusyAboveMax
    | WarmPool
    | Unplaceable
)


def describe(reasons: Sequence[Reason]) -> str:
    """A decision's reasons as one line: what the group does first, then what that rests on."""
    return "; ".join(r.text() for r in reasons)
