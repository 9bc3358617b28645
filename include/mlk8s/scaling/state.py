"""What the scaling policy remembers between decisions, and its JSON form.

The sensor carries the state between cycles as plain JSON (trigger kwargs, XCom), so it survives reschedules,
deferrals and sensor restarts; the simulator round-trips it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlk8s.scaling.model import is_finite, require
from mlk8s.scaling.warm_pool import GAPS_KEPT, LevelHistory

#: Key of the JSON form of :class:`PolicyState`, bumped when its layout changes. Version 1 (before the warm
#: pool) is still read, so a sensor running across an upgrade keeps its scale-down window.
STATE_VERSION = 2
_READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between decisions, per group.

    ``recommendations[group]`` holds ``(time, workers)`` pairs from the scale-down window: how many workers
    beyond the busy ones the demand asked for from that time on (until the next pair). Only pairs that can
    still be the window's maximum are kept (each is larger than every later one), so it stays a handful of
    entries. ``levels[group]`` is what the warm pool learnt of each level of the group (its k-th worker):
    since when it is unwanted and its recent idle gaps (:mod:`mlk8s.scaling.warm_pool`); at most
    ``max_workers`` levels of :data:`~mlk8s.scaling.warm_pool.GAPS_KEPT` gaps each. Treat it as opaque;
    round-trip it through :meth:`to_json`/:meth:`from_json`.
    """

    recommendations: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)
    levels: Mapping[str, tuple[LevelHistory, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "recommendations": {
                group: [[t, n] for t, n in entries] for group, entries in sorted(self.recommendations.items())
            },
            "levels": {
                group: [[level.unwanted_since, list(level.gaps)] for level in levels]
                for group, levels in sorted(self.levels.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PolicyState:
        """Rebuild the state; None or ``{}`` is a fresh state (first run of the sensor)."""
        if not data:
            return cls()
        version = data.get("version") if isinstance(data, Mapping) else None
        require(
            version in _READABLE_VERSIONS,
            f"PolicyState JSON has version {version!r} (expected {STATE_VERSION}); "
            "pass the dict that PolicyState.to_json() produced, or None to start fresh",
        )
        return cls(
            recommendations=_recommendations(data.get("recommendations", {})),
            levels=_levels(data.get("levels", {})),
        )


def _recommendations(raw: object) -> dict[str, tuple[tuple[float, int], ...]]:
    require(
        isinstance(raw, Mapping),
        "PolicyState JSON 'recommendations' must map group name to [[time, workers], ...]",
    )
    assert isinstance(raw, Mapping)
    out: dict[str, tuple[tuple[float, int], ...]] = {}
    for group, entries in raw.items():
        parsed: list[tuple[float, int]] = []
        for entry in entries if isinstance(entries, Sequence) else [entries]:
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
    return out


def _level(group: object, entry: object) -> LevelHistory:
    ok = (
        isinstance(entry, Sequence)
        and len(entry) == 2
        and (entry[0] is None or is_finite(entry[0]))
        and isinstance(entry[1], Sequence)
        and len(entry[1]) <= GAPS_KEPT
        and all(is_finite(g) and g >= 0 for g in entry[1])
    )
    require(
        ok,
        f"PolicyState JSON levels[{group!r}] has entry {entry!r}; expected [unwanted_since_s or null, "
        f"[gap_s >= 0, ... at most {GAPS_KEPT}]] (pass None to start fresh)",
    )
    assert isinstance(entry, Sequence)
    since = None if entry[0] is None else float(entry[0])
    return LevelHistory(since, tuple(float(g) for g in entry[1]))


def _levels(raw: object) -> dict[str, tuple[LevelHistory, ...]]:
    require(isinstance(raw, Mapping), "PolicyState JSON 'levels' must map group name to a list of levels")
    assert isinstance(raw, Mapping)
    out: dict[str, tuple[LevelHistory, ...]] = {}
    for group, entries in raw.items():
        require(isinstance(entries, Sequence), f"PolicyState JSON levels[{group!r}] must be a list of levels")
        out[str(group)] = tuple(_level(group, e) for e in entries)
    return out
