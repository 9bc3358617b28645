"""A deterministic row sample for pipelines: ``use: mlk8s.preprocessing.sampling.sample_rows`` (a filter).

A row is kept when a hash of (seed, its key column) falls under ``fraction``, so the sample does not depend
on how the input is cut into tasks or on which worker runs them: a rerun or a relaunch keeps the same rows,
and a larger fraction keeps a superset of a smaller one's rows.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

_SCALE = float(2**64)


def _unit(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def sample_rows(table: pa.Table, *, fraction: float, seed: int = 0, column: str = "id") -> pa.Array:
    """Filter: keep about ``fraction`` (0 < fraction <= 1) of the rows, chosen by their ``column`` value."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ValueError(f"sample_rows: fraction must be a number in (0, 1], got {fraction!r}")
    if column not in table.column_names:
        raise ValueError(
            f"sample_rows: the input has no column {column!r} to sample by (has {', '.join(table.column_names)}); "
            "set args.column to a column that identifies a row"
        )
    if fraction == 1:
        return pa.array([True] * table.num_rows, pa.bool_())
    keys = table.column(column).to_pylist()
    return pa.array([key is not None and _unit(seed, str(key)) < fraction for key in keys], pa.bool_())
