"""What the scaling policy remembers between decisions, and its JSON form.

The sensor carries the state between cycles as plain JSON (trigger kwargs, XCom), so it survives reschedules,
deferrals and sensor restarts; the simulator round-trips it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlk8s.scaling.model import is_finite, require

#: Key of the JSON form of :class:`PolicyState`, bumped when its layout changes.
STATE_VERSION = 1


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between decisions: what the backlog asked for recently, per group.

    ``recommendations[group]`` holds ``(time, workers)`` pairs from the scale-down window: how many workers
    beyond the busy ones the demand asked for from that time on (until the next pair). Only pairs that can
    still be the window's maximum are kept (each is larger than every later one), so it stays a handful of
    entries. Treat it as opaque; round-trip it through :meth:`to_json`/:meth:`from_json`.
    """

    recommendations: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "recommendations": {
                group: [[t, n] for t, n in entries] for group, entries in sorted(self.recommendations.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PolicyState:
        """Rebuild the state; None or ``{}`` is a fresh state (first run of the sensor)."""
        if not data:
            return cls()
        require(
            isinstance(data, Mapping) and data.get("version") == STATE_VERSION,
            f"PolicyState JSON has version {data.get('version')!r} (expected {STATE_VERSION}); "
            "pass the dict that PolicyState.to_json() produced, or None to start fresh",
        )
        raw = data.get("recommendations", {})
        require(
            isinstance(raw, Mapping),
            "PolicyState JSON 'recommendations' must map group name to [[time, workers], ...]",
        )
        out: dict[str, tuple[tuple[float, int], ...]] = {}
        for group, entries in raw.items():
            parsed: list[tuple[float, int]] = []
            for entry in entries:
                ok = (
                    isinstance(entry, Sequence)
                    and len(entry) == 2
                    and is_finite(entry[0])
                    and isinstance(entry[1], int)
                    and entry[1] >= 0
                )
                require(
                    ok,
                    f"PolicyState JSON recommendations[{group!r}] has entry {entry!r}; "
                    "expected [time_s, workers>=0] (pass None to start fresh)",
                )
                parsed.append((float(entry[0]), int(entry[1])))
            out[str(group)] = tuple(parsed)
        return cls(recommendations=out)
