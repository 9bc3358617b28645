"""What the Ray pool sensor keeps for people to look at: the decision time series and the loop's errors.

Both are XComs of the sensor's task, bounded, read by the plugin's "Ray pool" page. This module imports
nothing heavy (the UI reads the keys from here):

- ``ray_pool_history``: a list of points, oldest first, ``{"t", "queued", "running", "ray_pending", "pool",
  "target", "groups": {group: [current, target]}, "reason"}``;
- ``ray_pool_errors``: a list of the loop's failed cycles, oldest first, ``{"t": epoch seconds, "cycle": n,
  "message": one line}``, so a pool whose every cycle fails says why instead of "no decisions yet";
- ``ray_pool_state``: the policy state, for a human asking why the pool holds its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlk8s.ray_gcs import RayState
    from mlk8s.scaling import Decision, QueueSnapshot

HISTORY_XCOM_KEY = "ray_pool_history"
ERRORS_XCOM_KEY = "ray_pool_errors"
STATE_XCOM_KEY = "ray_pool_state"
#: Reasons kept in the time series are cut to this length (XComs stay small).
POINT_REASON_CHARS = 240
#: Error messages are cut to this length, and this many of the latest errors are kept.
ERROR_CHARS = 500
ERRORS_KEPT = 50


def time_series_point(
    now: float, queues: Sequence[QueueSnapshot], ray: RayState | None, decisions: Sequence[Decision]
) -> dict[str, Any]:
    """One point for the UI: queue length vs pool size, and why the pool is what it is."""
    changing = [d for d in decisions if d.changes]
    reason = " | ".join(f"{d.group}: {d.reason}" for d in (changing or decisions[:1]))
    return {
        "t": round(now, 3),
        "queued": sum(q.queued + q.scheduled for q in queues),
        "running": sum(q.running for q in queues),
        "ray_pending": None if ray is None else ray.pending_requests,
        "pool": sum(d.current for d in decisions),
        "target": sum(d.target for d in decisions),
        "groups": {d.group: [d.current, d.target] for d in decisions},
        "reason": reason[:POINT_REASON_CHARS],
    }


def error_record(now: float, cycle: int, error: BaseException | str) -> dict[str, Any]:
    """One failed cycle, as the UI shows it: when, which cycle, and the error's first line."""
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}" if str(error).strip() else type(error).__name__
    else:
        text = error.strip() or "error"
    first = text.strip().splitlines()[0]
    return {"t": round(now, 3), "cycle": cycle, "message": first[:ERROR_CHARS]}


def append_bounded(items: Sequence[Any], new: Sequence[Any], limit: int) -> list[Any]:
    """``items + new``, keeping the newest ``limit``."""
    return (list(items) + list(new))[-limit:]
