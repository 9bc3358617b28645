"""Reading a committed preprocessing output, verified: a Delta table (what runs write) or an output of the old
manifest layout (``_manifest.json`` naming parts under ``_attempts/``), which is still read.

Only committed files are read (the Delta log's, or the manifest's), never a directory listing. Each file's
size must match its commit and its Parquet page checksums are verified; files of the old layout are also
checked against the sha256 their manifest recorded, and a manifest naming a path outside its output (``../``,
an absolute path) is refused. The input lister (:mod:`.sources`) reads a committed output through here too.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.preprocessing.errors import CommitError, CorruptOutputError
from mlk8s.preprocessing.schema import cast_to_schema
from mlk8s.storage import Location, UriError, delta_location, resolve

MANIFEST = "_manifest.json"
ATTEMPTS = "_attempts"
MANIFEST_FORMAT = "mlk8s.preprocessing/v1"
DELTA_LOG = "_delta_log"


@dataclass(frozen=True)
class CommittedFile:
    relative: str  # to the output's root
    size: int
    sha256: str | None = None  # recorded by the old layout's manifest
    partition: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommittedOutput:
    """What one committed version of an output holds."""

    location: Location
    layout: str  # "delta" or "manifest"
    files: tuple[CommittedFile, ...]
    schema: pa.Schema | None  # the Delta table's, partition columns included; None for the old layout
    version: int | None  # the Delta version read

    def path(self, file: CommittedFile) -> str:
        return self.location.child(file.relative).path


def is_delta_table(location: Location) -> bool:
    return bool(location.fs.get_file_info(location.child(DELTA_LOG).path).type == pafs.FileType.Directory)


def open_output(
    uri: str, *, version: int | None = None, partition: dict[str, str] | None = None
) -> CommittedOutput | None:
    """The committed files at ``uri`` (of one ``partition`` and Delta ``version`` when given); ``None`` when
    nothing was ever committed there."""
    try:
        location = resolve(uri)
    except UriError as exc:
        raise FileNotFoundError(str(exc)) from None
    if is_delta_table(location):
        return _open_delta(uri, location, version, partition)
    manifest = read_manifest(uri)
    if manifest is None:
        return None
    files = tuple(CommittedFile(p["path"], int(p["bytes"]), p.get("sha256")) for p in manifest["files"])
    return CommittedOutput(location, "manifest", files, None, None)


def _open_delta(uri: str, location: Location, version: int | None, partition: dict[str, str] | None) -> CommittedOutput:
    from deltalake import DeltaTable

    table_uri, options = delta_location(uri)
    dt = DeltaTable(table_uri, version=version, storage_options=options or None)
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    columns = list(dt.metadata().partition_columns)
    unknown = sorted(set(partition or {}) - set(columns))
    if unknown:
        raise ValueError(f"partition: {unknown} are not partition columns of {uri} (it has {columns})")
    files = []
    for action in sorted(actions, key=lambda a: str(a["path"])):
        values = {c: action.get(f"partition.{c}") for c in columns}
        if all(values[k] == v for k, v in (partition or {}).items()):
            files.append(
                CommittedFile(_safe_relative(uri, str(action["path"])), int(action["size_bytes"]), None, values)
            )
    return CommittedOutput(location, "delta", tuple(files), pa.schema(dt.schema().to_arrow()), int(dt.version()))


def _safe_relative(uri: str, path: str) -> str:
    """``path`` if it names a file inside the output; a path that leaves it is refused."""
    normal = posixpath.normpath(path)
    if "://" in path or path.startswith("/") or normal.startswith("..") or normal in (".", ""):
        raise CorruptOutputError(f"{uri}: the commit names {path!r}, outside the output; refusing to read it")
    return normal


def read_manifest(output_uri: str) -> dict[str, Any] | None:
    """The committed manifest of the old layout, or ``None`` when there is none."""
    location = resolve(output_uri)
    path = location.child(MANIFEST).path
    try:
        if location.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with location.fs.open_input_stream(path) as fh:
            manifest: dict[str, Any] = json.loads(bytes(fh.read()))
    except (OSError, pa.ArrowException, json.JSONDecodeError) as exc:
        raise CommitError(f"cannot read the manifest at {location.child(MANIFEST).uri} ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise CommitError(f"{location.child(MANIFEST).uri} is not an mlk8s preprocessing manifest")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(p, dict) and "path" in p and "bytes" in p for p in files):
        raise CommitError(f"{location.child(MANIFEST).uri}: 'files' must list {{path, bytes, sha256}} entries")
    for part in files:
        part["path"] = _safe_relative(output_uri, str(part["path"]))
    return manifest


def committed_files(output_uri: str) -> list[str]:
    """URIs of the committed Parquet files (empty when nothing is committed)."""
    output = open_output(output_uri)
    return [] if output is None else [output.location.child(f.relative).uri for f in output.files]


def _open_verified(output: CommittedOutput, file: CommittedFile) -> Any:
    """A ParquetFile for ``file`` whose size (and recorded sha256) match its commit; pages verified on read."""
    import pyarrow.parquet as pq

    fs, path = output.location.fs, output.path(file)
    info = fs.get_file_info(path)
    if info.size != file.size:
        raise CorruptOutputError(
            f"{output.location.child(file.relative).uri}: committed with {file.size} bytes, found "
            f"{'none' if info.type == pafs.FileType.NotFound else info.size}; the output is damaged"
        )
    if file.sha256 is None:
        return pq.ParquetFile(fs.open_input_file(path), page_checksum_verification=True)
    with fs.open_input_stream(path) as fh:
        data = bytes(fh.read())
    if hashlib.sha256(data).hexdigest() != file.sha256:
        raise CorruptOutputError(
            f"{output.location.child(file.relative).uri}: its sha256 differs from the manifest's; the file is damaged"
        )
    return pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)


def iter_output(
    uri: str,
    columns: list[str] | None = None,
    *,
    partition: dict[str, str] | None = None,
    version: int | None = None,
    batch_size: int = 65536,
) -> Iterator[pa.Table]:
    """The committed output as tables of up to ``batch_size`` rows, file by file (bounded memory)."""
    output = open_output(uri, version=version, partition=partition)
    if output is None:
        raise FileNotFoundError(f"no committed output at {uri} (neither {DELTA_LOG}/ nor {MANIFEST})")
    for file in output.files:
        yield from _iter_file(output, file, columns, batch_size)


def _iter_file(
    output: CommittedOutput, file: CommittedFile, columns: list[str] | None, batch_size: int
) -> Iterator[pa.Table]:
    where = output.location.child(file.relative).uri
    try:
        parquet = _open_verified(output, file)
        names = parquet.schema_arrow.names
        wanted = None if columns is None else [c for c in columns if c in names]
        for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
            yield _complete(output, file, pa.Table.from_batches([batch]), columns)
    except CorruptOutputError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise CorruptOutputError(f"{where}: cannot be read ({exc}); the output is damaged") from None


def _complete(output: CommittedOutput, file: CommittedFile, table: pa.Table, columns: list[str] | None) -> pa.Table:
    """A file's rows with its partition values as columns and, for a Delta table, every column of the table's
    schema (a file written before a column was added has nulls there)."""
    for key, value in file.partition.items():
        table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    if output.schema is not None:
        schema = output.schema if columns is None else pa.schema([output.schema.field(c) for c in columns])
        table = cast_to_schema(table, pa.schema([f.with_nullable(True) for f in schema]), extra="drop")
    elif columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table


def read_output(
    uri: str,
    columns: list[str] | None = None,
    *,
    partition: dict[str, str] | None = None,
    version: int | None = None,
) -> pa.Table:
    """The committed output as one table (see :func:`iter_output` to stream it)."""
    tables = list(iter_output(uri, columns, partition=partition, version=version))
    if tables:
        return pa.concat_tables(tables, promote_options="permissive")
    output = open_output(uri, version=version, partition=partition)
    if output is not None and output.schema is not None:
        schema = output.schema if columns is None else pa.schema([output.schema.field(c) for c in columns])
        return schema.empty_table()
    return pa.schema([pa.field(n, pa.null()) for n in columns or []]).empty_table()
