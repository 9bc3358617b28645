"""The declared output schema: Arrow types from their short spellings, and tables cast to a declared schema.

The spec (``schema.fields``), the ``to_schema`` transform and the part writer all use it, so a type means the
same thing wherever it is spelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from mlk8s.preprocessing.errors import SpecError

_SIMPLE_TYPES: dict[str, Callable[[], pa.DataType]] = {
    "null": pa.null,
    "bool": pa.bool_,
    "boolean": pa.bool_,
    "int8": pa.int8,
    "int16": pa.int16,
    "int32": pa.int32,
    "int64": pa.int64,
    "uint8": pa.uint8,
    "uint16": pa.uint16,
    "uint32": pa.uint32,
    "uint64": pa.uint64,
    "float16": pa.float16,
    "float32": pa.float32,
    "float": pa.float32,
    "float64": pa.float64,
    "double": pa.float64,
    "string": pa.string,
    "utf8": pa.string,
    "large_string": pa.large_string,
    "binary": pa.binary,
    "large_binary": pa.large_binary,
    "date32": pa.date32,
    "date64": pa.date64,
}
TYPE_HELP = (
    "use one of " + ", ".join(sorted(_SIMPLE_TYPES)) + ", timestamp[s|ms|us|ns] or timestamp[us, UTC], "
    "decimal128(precision, scale), list<TYPE>, optionally followed by ' not null'"
)


def parse_type(text: str) -> tuple[pa.DataType, bool]:
    """An Arrow type from its short spelling; returns (type, nullable)."""
    spelled = text.strip()
    nullable = True
    if spelled.lower().endswith(" not null"):
        spelled, nullable = spelled[: -len(" not null")].strip(), False
    return _parse_type(spelled, text), nullable


def _parse_type(spelled: str, original: str) -> pa.DataType:
    lower = spelled.lower()
    if lower in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[lower]()
    if lower.startswith("list<") and lower.endswith(">"):
        return pa.list_(_parse_type(spelled[5:-1].strip(), original))
    if lower.startswith("large_list<") and lower.endswith(">"):
        return pa.large_list(_parse_type(spelled[11:-1].strip(), original))
    match = re.fullmatch(r"timestamp\[(s|ms|us|ns)(?:,\s*([^\]]+))?\]", spelled, flags=re.IGNORECASE)
    if match:
        return pa.timestamp(match.group(1).lower(), tz=match.group(2))
    match = re.fullmatch(r"decimal128\((\d+),\s*(\d+)\)", lower)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise SpecError(f"unknown type {original!r}: {TYPE_HELP}")


def parse_fields(fields: Any, where: str = "schema.fields") -> pa.Schema:
    if not isinstance(fields, dict) or not fields:
        raise SpecError(f"{where} must be a non-empty mapping of column name to type, e.g. {{id: string}}")
    out = []
    for name, spelled in fields.items():
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}: column names must be non-empty strings, got {name!r}")
        if not isinstance(spelled, str):
            raise SpecError(f"{where}.{name}: the type must be a string such as 'int64', got {spelled!r}")
        try:
            dtype, nullable = parse_type(spelled)
        except SpecError as exc:
            raise SpecError(f"{where}.{name}: {exc}") from None
        out.append(pa.field(name, dtype, nullable=nullable))
    return pa.schema(out)


def cast_to_schema(table: pa.Table, schema: pa.Schema, *, extra: str = "keep") -> pa.Table:
    columns: list[Any] = []
    fields: list[pa.Field] = []
    for field in schema:
        if field.name in table.column_names:
            column = table[field.name].cast(field.type)
        else:
            column = pa.nulls(table.num_rows, field.type)
        if not field.nullable and column.null_count:
            raise ValueError(
                f"field {field.name!r} is declared 'not null' but {column.null_count} of {table.num_rows} rows "
                f"have no value{'' if field.name in table.column_names else ' (the column is missing)'}"
            )
        columns.append(column)
        fields.append(field)
    if extra == "keep":
        for field in table.schema:
            if field.name not in schema.names:
                columns.append(table[field.name])
                fields.append(field)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
