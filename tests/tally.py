"""A tally of what the hostile tests try (issue 13): bad inputs tried and held, faults injected and held.

Tests call :func:`held` where they check the contract for one bad input or one injected fault, so a run ends
with the counts the issue's closing note asks for (``pytest -rA`` or the terminal summary prints them). A case
is counted before its assertion, so a failing run still reports what did not hold.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

BAD_INPUT = "bad inputs"
FAULT = "faults injected"

_tried: Counter[str] = Counter()
_held: Counter[str] = Counter()
_classes: dict[str, Counter[str]] = {}
_printed = False


def held(kind: str, what: str, ok: bool) -> bool:
    """Count one case of ``kind`` (BAD_INPUT or FAULT), in class ``what``; returns ``ok`` for the assert."""
    _tried[kind] += 1
    _held[kind] += bool(ok)
    _classes.setdefault(kind, Counter())[what] += 1
    return ok


def counts() -> dict[str, Any]:
    return {k: {"tried": _tried[k], "held": _held[k], "classes": dict(_classes.get(k, {}))} for k in sorted(_tried)}


def export() -> dict[str, Any]:
    """This process's raw counts, for an xdist worker to hand to the controller (see :func:`merge`)."""
    return {"tried": dict(_tried), "held": dict(_held), "classes": {k: dict(v) for k, v in _classes.items()}}


def merge(data: dict[str, Any]) -> None:
    """Add a worker's :func:`export` to this process's counts (the controller of a ``pytest -n`` run)."""
    _tried.update(data.get("tried", {}))
    _held.update(data.get("held", {}))
    for kind, classes in data.get("classes", {}).items():
        _classes.setdefault(kind, Counter()).update(classes)


def terminal_summary(terminalreporter: Any) -> None:
    """Print the tally once per session."""
    global _printed
    if _printed or not _tried:
        return
    _printed = True
    terminalreporter.section("mlk8s contract tally (issue 13)")
    for kind, body in counts().items():
        terminalreporter.write_line(f"{kind}: {body['tried']} tried, {body['held']} held")
        for name, n in sorted(body["classes"].items()):
            terminalreporter.write_line(f"    {n:4d}  {name}")
