"""User transforms for the tests, named by dotted path in pipeline specs (as a user's own module would be)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc


def keep_labels(table: pa.Table, *, labels: list[int]) -> pa.ChunkedArray:
    """A user filter: keep rows whose label is one of ``labels``."""
    return pc.is_in(table["label"], value_set=pa.array(labels, pa.int64()))


def shout(table: pa.Table, *, column: str = "text") -> pa.Table:
    """A user map: upper-case a column."""
    index = table.column_names.index(column)
    return table.set_column(index, column, pc.utf8_upper(table[column]))


def slow_identity(table: pa.Table, *, seconds: float = 0.2, marker_dir: str | None = None) -> pa.Table:
    """A user map that takes time, so a test can kill the worker running it while the task is in flight.

    With ``marker_dir``, it first leaves a file named after its process id there: the test's cue to kill.
    """
    if marker_dir:
        Path(marker_dir, f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    time.sleep(seconds)
    return table


def not_a_mask(table: pa.Table) -> pa.Table:
    """A broken filter: returns a table instead of a boolean mask."""
    return table


class Tagger:
    """A user actor: constructed once per Ray actor, then called with batches; adds a constant column."""

    def __init__(self, *, tag: str = "seen") -> None:
        self.tag = tag

    def __call__(self, table: pa.Table) -> pa.Table:
        return table.append_column("tag", pa.array([self.tag] * table.num_rows, pa.string()))


NOT_CALLABLE = 42
