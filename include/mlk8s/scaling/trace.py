"""Task traces for the simulator: the CSV format, its parser, and the checks that a trace can be replayed.

A trace is a CSV with the header ``submit_s,duration_s,cpus,gpus``: when each task is handed to Ray, how long
it runs once started, and what it asks for. Every refusal names the line, the field and the fix.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlk8s.scaling.model import ResourceDemand, WorkerGroupSpec
from mlk8s.scaling.packing import group_for

TRACE_HEADER = ("submit_s", "duration_s", "cpus", "gpus")

#: The largest time a trace may hold, in seconds (about 317 years: Unix time in seconds fits, milliseconds not).
MAX_TRACE_S = 1e10


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the line, the field and the fix."""


@dataclass(frozen=True)
class Task:
    """One task of a trace."""

    submit_s: float
    duration_s: float
    cpus: float
    gpus: float

    @property
    def shape(self) -> tuple[float, float]:
        return (self.cpus, self.gpus)


def _number(text: str, line: int, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"trace line {line}: {name}={text!r} is not a number; write a plain number") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"trace line {line}: {name}={text!r}; it must be a finite number >= 0")
    if name in ("submit_s", "duration_s") and value > MAX_TRACE_S:
        raise TraceError(
            f"trace line {line}: {name}={text!r} is more than {MAX_TRACE_S:g} s; write seconds "
            "(a millisecond timestamp divided by 1000)"
        )
    return value


def _task(row: Sequence[str], line: int) -> Task:
    if len(row) != len(TRACE_HEADER):
        raise TraceError(
            f"trace line {line}: {len(row)} fields; each row needs {len(TRACE_HEADER)}: {','.join(TRACE_HEADER)}"
        )
    submit, duration, cpus, gpus = (_number(c, line, n) for c, n in zip(row, TRACE_HEADER))
    if duration == 0:
        raise TraceError(f"trace line {line}: duration_s=0; a task must run for a positive time")
    if cpus == 0 and gpus == 0:
        raise TraceError(f"trace line {line}: cpus=0 and gpus=0; a task must ask for a CPU or a GPU")
    return Task(submit_s=submit, duration_s=duration, cpus=cpus, gpus=gpus)


def load_trace(path: Path) -> list[Task]:
    """Read a trace CSV (header exactly ``submit_s,duration_s,cpus,gpus``), sorted by submit time."""
    if not path.is_file():
        what = "not a file" if path.exists() else "no such file"
        raise TraceError(f"--trace {path}: {what}; pass a CSV with header {','.join(TRACE_HEADER)}")
    try:
        tasks = _read(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"--trace {path}: cannot be read as CSV text ({exc}); pass a UTF-8 CSV file") from None
    if not tasks:
        raise TraceError(f"trace {path}: no tasks after the header; add rows or pass another trace")
    tasks.sort(key=lambda t: t.submit_s)
    return tasks


def _read(path: Path) -> list[Task]:
    tasks: list[Task] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != TRACE_HEADER:
            raise TraceError(
                f"trace {path}: header is {header!r}; the first line must be exactly {','.join(TRACE_HEADER)}"
            )
        for line, row in enumerate(reader, start=2):
            if row and any(c.strip() for c in row):
                tasks.append(_task(row, line))
    return tasks


def check_trace_fits(tasks: Sequence[Task], groups: Sequence[WorkerGroupSpec]) -> None:
    """Every task must fit some group with max_workers > 0, or the replay would wait forever."""
    seen: set[tuple[float, float]] = set()
    for i, t in enumerate(tasks):
        if t.shape in seen:
            continue
        seen.add(t.shape)
        g = group_for(ResourceDemand(cpus=t.cpus, gpus=t.gpus), groups)
        if g is None or g.max_workers == 0:
            kind = "GPU" if t.gpus else "CPU"
            shapes = ", ".join(
                f"{x.name}: {x.cpus_per_worker:g} CPU/{x.gpus_per_worker:g} GPU x{x.max_workers}" for x in groups
            )
            raise TraceError(
                f"trace task {i} (submit_s={t.submit_s:g}) asks for cpus={t.cpus:g}, gpus={t.gpus:g}, which no "
                f"{kind} worker group can run ({shapes}); widen the group flags or fix the trace"
            )
