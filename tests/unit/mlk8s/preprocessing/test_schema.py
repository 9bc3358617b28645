"""Type spellings, and casting to a declared schema (order, types, missing columns, 'not null')."""

from __future__ import annotations

import pyarrow as pa
import pytest

from mlk8s.preprocessing.schema import cast_to_schema, parse_type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("string", pa.string()),
        ("list<float32>", pa.list_(pa.float32())),
        ("list<list<int8>>", pa.list_(pa.list_(pa.int8()))),
        ("timestamp[us, UTC]", pa.timestamp("us", tz="UTC")),
        ("decimal128(10, 2)", pa.decimal128(10, 2)),
    ],
)
def test_type_spellings(text: str, expected: pa.DataType) -> None:
    assert parse_type(text) == (expected, True)


def test_cast_keeps_undeclared_columns_after_the_declared_ones() -> None:
    table = pa.table({"b": ["1", "2"], "a": [1.0, 2.0], "zzz": [0, 0]})
    kept = cast_to_schema(table, pa.schema([("a", pa.int64())]), extra="keep")
    assert kept.column_names == ["a", "b", "zzz"]
    assert cast_to_schema(table, pa.schema([("a", pa.int64())]), extra="drop").column_names == ["a"]
