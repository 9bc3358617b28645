"""The output Delta table as a run writes it: its location, the run's partition, the schema every part is cast to.

Everything here is checked before any work (:func:`open_table`): the location is a directory holding a Delta
table or nothing (never a file, an output of the old manifest layout or unrelated files); the table is
partitioned by exactly the run's partition keys; the run's output schema is the table's (a change is refused
unless the spec says ``schema: {evolve: true}``, which adds new columns). A missing table is created (an empty
version 0) before the Ray job starts, so an unwritable location is a usage error and a relaunch finds a table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.preprocessing.errors import OutputError, SpecError
from mlk8s.storage import Location, UriError, delta_location, resolve

if TYPE_CHECKING:
    from deltalake import DeltaTable

logger = logging.getLogger(__name__)

DELTA_LOG = "_delta_log"
LEGACY_MANIFEST = "_manifest.json"
PARTITION_KEY = re.compile(r"[a-z_][a-z0-9_]{0,63}")
PARTITION_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def first_line(exc: BaseException) -> str:
    """delta-rs errors carry a Rust backtrace after their first line; messages keep the first."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Partition:
    """The partition a run replaces, e.g. ``run_key=scheduled__2026-01-01T02_00_00``; empty: the whole table."""

    values: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, items: Sequence[str] | None) -> Partition:
        values: list[tuple[str, str]] = []
        for item in items or ():
            key, sep, value = item.partition("=")
            if not sep or not PARTITION_KEY.fullmatch(key):
                raise OutputError(
                    f"--partition: {item!r} must be KEY=VALUE with KEY lower-case letters, digits and '_' "
                    "(a column name), e.g. run_key=manual__2026-01-01"
                )
            if not PARTITION_VALUE.fullmatch(value):
                raise OutputError(
                    f"--partition: the value of {key} ({value!r}) must be 1-200 letters, digits, '.', '_' or '-' "
                    "(it names a directory); make it path-safe, e.g. replace ':' and '+' with '_'"
                )
            if key in dict(values):
                raise OutputError(f"--partition: {key} is given twice")
            values.append((key, value))
        return cls(tuple(values))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.values]

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)

    @property
    def directory(self) -> str:
        """Where its parts go, relative to the table's root (Hive style, as every Delta writer lays them out)."""
        return "/".join(f"{key}={value}" for key, value in self.values)

    def filters(self) -> list[tuple[str, str, Any]] | None:
        return [(key, "=", value) for key, value in self.values] or None


@dataclass(frozen=True)
class OutputTable:
    """A checked output table: where it is for pyarrow and for delta-rs, and what a run writes to it."""

    uri: str  # as the user gave it (pyarrow reads and writes parts through it)
    table_uri: str  # as deltalake takes it
    storage_options: dict[str, str]
    location: Location
    partition: Partition
    schema: pa.Schema  # the data columns, in Delta's Arrow types; partition columns excluded

    @property
    def full_schema(self) -> pa.Schema:
        """The table's schema with its partition columns (strings) appended."""
        return pa.schema([*self.schema, *(pa.field(key, pa.string()) for key in self.partition.keys)])

    def delta_table(self, version: int | None = None) -> DeltaTable:
        from deltalake import DeltaTable

        return DeltaTable(self.table_uri, version=version, storage_options=self.storage_options or None)


def inspect_location(uri: str) -> tuple[Location, bool]:
    """The output's location and whether a Delta table is there; :class:`OutputError` when it cannot hold one."""
    try:
        location = resolve(uri)
        info = location.fs.get_file_info(location.path)
    except UriError as exc:
        raise OutputError(f"--output: {exc}") from None
    except (OSError, pa.ArrowException) as exc:
        raise OutputError(f"--output: cannot read {uri!r} ({exc}); check the URI and the credentials") from None
    if info.type == pafs.FileType.File:
        raise OutputError(f"--output: {uri!r} is a file; give a directory (the Delta table's root)")
    if info.type != pafs.FileType.Directory:
        _refuse_file_ancestor(uri, location)
        return location, False
    if location.fs.get_file_info(location.child(DELTA_LOG).path).type == pafs.FileType.Directory:
        return location, True
    if location.fs.get_file_info(location.child(LEGACY_MANIFEST).path).type == pafs.FileType.File:
        raise OutputError(
            f"--output: {uri!r} holds an output of the old manifest layout ({LEGACY_MANIFEST}); write the Delta "
            "table to a new location (mlk8s.preprocessing.read_output still reads the old one)"
        )
    if location.fs.get_file_info(pafs.FileSelector(location.path)):
        raise OutputError(
            f"--output: {uri!r} holds files but no Delta table ({DELTA_LOG}/); give an empty or new location"
        )
    return location, False


def _refuse_file_ancestor(uri: str, location: Location) -> None:
    """A location below a file can never be created (checked without creating it, as --validate-only must)."""
    path = location.path.rstrip("/")
    while "/" in path.strip("/"):
        path = path.rpartition("/")[0] or "/"
        info = location.fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise OutputError(f"--output: cannot create a Delta table at {uri!r}: {path} is a file")
        if info.type == pafs.FileType.Directory:
            return


def delta_schema(run_schema: pa.Schema, partition: Partition) -> pa.Schema:
    """``run_schema`` in the Arrow types a Delta table stores (e.g. large_string as string; a column that is
    null in every sampled row as string), or :class:`SpecError` naming a type Delta cannot hold."""
    from deltalake import Schema as DeltaSchema

    fields = []
    for field in run_schema:
        if field.name in partition.keys:
            raise OutputError(
                f"--partition: {field.name} is also a column of the pipeline's output; pick another partition "
                "key or drop the column"
            )
        if pa.types.is_null(field.type):
            field = pa.field(field.name, pa.string())
        try:
            converted = pa.schema(DeltaSchema.from_arrow(pa.schema([field])).to_arrow()).field(0)
        except Exception as exc:  # delta-rs raises a bare Exception for unsupported types
            raise SpecError(
                f"schema: column {field.name!r} of type {field.type} cannot be stored in a Delta table "
                f"({first_line(exc)}); declare another type for it in schema.fields (e.g. float32, timestamp[us])"
            ) from None
        fields.append(converted)
    return pa.schema(fields)


def reconcile(table_schema: pa.Schema, run_schema: pa.Schema, *, evolve: bool, uri: str) -> pa.Schema:
    """The schema this run writes: the table's own when the run's matches it; with ``evolve``, the table's
    plus the run's new columns. Any other difference is refused before work."""
    changed = [
        f"{f.name}: {table_schema.field(f.name).type} -> {f.type}"
        for f in run_schema
        if f.name in table_schema.names and not table_schema.field(f.name).type.equals(f.type)
    ]
    added = [f for f in run_schema if f.name not in table_schema.names]
    removed = [f for f in table_schema if f.name not in run_schema.names]
    if not changed and not added and not removed:
        return table_schema
    if evolve and not changed and not [f for f in removed if not f.nullable]:
        logger.info("schema evolves: adding columns %s to %s", [f.name for f in added], uri)
        return pa.schema([*table_schema, *(f.with_nullable(True) for f in added)])
    details = "; ".join(
        part
        for part in (
            f"changed {changed}" if changed else "",
            f"new {[f.name for f in added]}" if added else "",
            f"missing {[f.name for f in removed]}" if removed else "",
        )
        if part
    )
    hint = (
        "types never change in place: write to a new table"
        if changed
        else "set schema.evolve: true in the spec to add the new columns, or write to a new table"
    )
    raise SpecError(f"schema: the pipeline's output differs from the table at {uri} ({details}); {hint}")


def open_table(
    uri: str, partition: Partition, run_schema: pa.Schema, *, evolve: bool = False, create: bool = True
) -> OutputTable:
    """Check the output against this run, and create the table when it is missing and ``create``."""
    location, exists = inspect_location(uri)
    table_uri, options = _delta_location(uri)
    schema = delta_schema(run_schema, partition)
    table = OutputTable(uri, table_uri, options, location, partition, schema)
    if not exists:
        if not create:
            return table
        _create(table)
    current = existing_table(uri, partition)
    return OutputTable(
        uri, table_uri, options, location, partition, reconcile(current.schema, schema, evolve=evolve, uri=uri)
    )


def existing_table(uri: str, partition: Partition) -> OutputTable:
    """The Delta table at ``uri`` with its own schema, checked to be partitioned by ``partition``'s keys."""
    location, _ = inspect_location(uri)
    table_uri, options = _delta_location(uri)
    table = OutputTable(uri, table_uri, options, location, partition, pa.schema([]))
    try:
        dt = table.delta_table()
    except Exception as exc:  # TableNotFoundError, DeltaError: a log that cannot be read
        raise OutputError(f"--output: {uri!r} holds a Delta table that cannot be read ({first_line(exc)})") from None
    columns = list(dt.metadata().partition_columns)
    if columns != partition.keys:
        flags = " ".join(f"--partition {c}=VALUE" for c in columns) if columns else "no --partition"
        raise OutputError(f"--partition: the table at {uri} is partitioned by {columns or 'nothing'}; pass {flags}")
    schema = pa.schema([f for f in pa.schema(dt.schema().to_arrow()) if f.name not in columns])
    return OutputTable(uri, table_uri, options, location, partition, schema)


def _delta_location(uri: str) -> tuple[str, dict[str, str]]:
    try:
        return delta_location(uri)
    except UriError as exc:
        raise OutputError(f"--output: {exc}") from None


def _create(table: OutputTable) -> None:
    from deltalake import DeltaTable

    try:
        # mode="ignore": a driver racing this one may create it first; its table is checked like any other.
        DeltaTable.create(
            table.table_uri,
            table.full_schema,
            mode="ignore",
            partition_by=table.partition.keys or None,
            storage_options=table.storage_options or None,
        )
    except Exception as exc:  # DeltaError, OSError: the location cannot be written
        raise OutputError(f"--output: cannot create a Delta table at {table.uri!r} ({first_line(exc)})") from None
    logger.info("created delta table %s partitioned by %s", table.uri, table.partition.keys or "nothing")
