"""The scale-down window: what the demand asked for beyond the busy workers, and the most it asked lately.

Like the Kubernetes HPA's scale-down stabilization window, idle workers go only once the demand has not asked
for them during the window. Here what the demand asks for is a step function of time (an ask holds from the
decision that saw it until the next decision), so the window means the same whatever the sensor's interval,
and calls skipped while nothing changed (the simulator skips them) leave the same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: One entry of the window: from this time on (until the next entry), the demand asked for this many workers
#: beyond the busy ones.
Entry = tuple[float, int]


def update_window(entries: Iterable[Entry], now: float, extra: int, window_s: float) -> tuple[Entry, ...]:
    """The window's entries after a decision that saw ``extra``; the first is the window's maximum.

    Only entries that can still be that maximum are kept (each larger than every later one), so the window
    stays a handful of entries.
    """
    kept = list(entries)
    since = now
    while kept and kept[-1][1] <= extra:  # a larger or equal ask covers the smaller ones before it
        since = kept.pop()[0]
    kept.append((since, extra))
    horizon = now - window_s
    while len(kept) > 1 and kept[1][0] <= horizon:  # superseded before the window began
        kept.pop(0)
    return tuple(kept)


def window_expires_at(entries: Sequence[Entry], window_s: float) -> float | None:
    """When the window's maximum leaves it (one window after the next entry superseded it); None: never."""
    return entries[1][0] + window_s if len(entries) > 1 else None
