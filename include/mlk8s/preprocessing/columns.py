"""Column helpers the built-in transforms share (the cleaning maps and the embedding step)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def text_column(table: pa.Table, column: str) -> pa.ChunkedArray:
    """``column`` as text, nulls as ""; a ``KeyError`` naming the batch's columns when it is missing."""
    if column not in table.column_names:
        raise KeyError(f"column {column!r} not in batch (columns: {table.column_names})")
    return strings(table[column])


def strings(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text values with nulls as "". A column that is null in every row of a batch (JSON gives it the null
    type) is text too."""
    if pa.types.is_null(values.type):
        values = values.cast(pa.string())
    return pc.fill_null(values, "")


def set_column(table: pa.Table, name: str, values: Any) -> pa.Table:
    """``table`` with column ``name`` replaced in place, or appended when it is new."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
