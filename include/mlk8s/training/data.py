"""Where training data comes from: a version (and partition) of a Delta table, Parquet files, or an output
committed in the old preprocessing manifest layout; listed once into files read in a fixed order, batch by batch.

A Delta table is read at one version: the one asked for, else the latest. Its files are listed through
``deltalake`` (the transaction log decides what the table holds) and read with pyarrow through
:mod:`mlk8s.storage`, so reads get the same bounded timeouts as everything else. Tables using reader features
this does not implement (deletion vectors, column mapping) are refused rather than read wrongly.

Files are read in sorted path order and rows in file order, so the same input gives the same rows in the same
order on every relaunch: the data order, and hence the weights, depend on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlk8s.storage import Location, UriError, call, delta_location, resolve
from mlk8s.training.task import TaskUsageError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("mlk8s.training")

DELTA_LOG = "_delta_log"
#: What the old layout of ``python -m mlk8s.preprocessing`` commits last; its parts are read through it.
PREPROCESSING_MANIFEST = "_manifest.json"
_READ_BUFFER = 1 << 20
_UNSUPPORTED_DELTA_FEATURES = {"deletionVectors": "deletion vectors", "columnMapping": "column mapping"}


@dataclass(frozen=True)
class DataFile:
    loc: Location
    rows: int


@dataclass(frozen=True)
class DataSource:
    """The files behind ``--data``, in read order, and what identifies them (kind, version, partition)."""

    uri: str
    kind: str  # "delta", "parquet" or "preprocessing-manifest"
    files: tuple[DataFile, ...]
    version: int | None = None
    partition: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint records about the source (the reader adds row count and content hash)."""
        return {"kind": self.kind, "uri": self.uri, "version": self.version, "partition": dict(self.partition)}

    def batches(self, columns: list[str], batch_rows: int) -> Iterator[tuple[DataFile, int, pa.RecordBatch]]:
        """(file, index in the file of the batch's first row, batch) for every batch, in read order."""
        import pyarrow.parquet as pq

        for data_file in self.files:
            with data_file.loc.fs.open_input_file(data_file.loc.path) as handle:
                first = 0
                # pre_buffer (pyarrow's default) reads every selected column chunk of the file up front: the
                # whole file in memory. Unbuffered, with a small read buffer, memory stays at one row group.
                reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=_READ_BUFFER)
                for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):
                    yield data_file, first, batch
                    first += batch.num_rows


def open_source(
    uri: str, *, partition: Mapping[str, str] | None = None, version: int | None = None, timeout_s: float | None = None
) -> DataSource:
    """Resolve ``--data``; every problem is a :class:`TaskUsageError` naming the flag to fix."""
    import pyarrow.fs as pafs

    try:
        loc = resolve(uri, timeout_s=timeout_s)
    except UriError as exc:
        raise TaskUsageError("--data", str(exc)) from exc
    info = call(loc, f"reading {uri}", loc.fs.get_file_info, loc.path)
    if info.type == pafs.FileType.NotFound:
        raise TaskUsageError("--data", f"{uri} does not exist; point it at a Delta table, Parquet file or directory")
    delta_log = loc.child(DELTA_LOG)
    if call(loc, f"reading {delta_log.uri}", loc.fs.get_file_info, delta_log.path).type == pafs.FileType.Directory:
        return _delta_source(uri, loc, dict(partition or {}), version)
    if partition:
        raise TaskUsageError("--data-partition", f"{uri} is not a Delta table; drop --data-partition")
    if version is not None:
        raise TaskUsageError(
            "--data-version", f"{uri} is not a Delta table, so it has no versions; drop --data-version"
        )
    manifest = loc.child(PREPROCESSING_MANIFEST)
    if info.type == pafs.FileType.Directory and _is_file(manifest):
        return DataSource(uri, "preprocessing-manifest", _with_rows(_manifest_files(uri)))
    return DataSource(uri, "parquet", _with_rows(_parquet_files(uri, loc)))


def _is_file(loc: Location) -> bool:
    import pyarrow.fs as pafs

    return bool(call(loc, f"reading {loc.uri}", loc.fs.get_file_info, loc.path).type == pafs.FileType.File)


def _with_rows(files: list[Location]) -> tuple[DataFile, ...]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not files:
        raise TaskUsageError("--data", "holds no Parquet files (nor a Delta table or a committed preprocessing output)")

    def count(f: Location) -> int:
        with f.fs.open_input_file(f.path) as handle:
            return int(pq.ParquetFile(handle).metadata.num_rows)

    found = []
    for f in files:
        try:
            rows = call(f, f"reading {f.uri}", count, f)
        except (OSError, pa.ArrowException) as exc:
            raise TaskUsageError("--data", f"{f.uri} is not readable Parquet: {' '.join(str(exc).split())}") from exc
        found.append(DataFile(f, rows))
    return tuple(found)


def _parquet_files(uri: str, loc: Location) -> list[Location]:
    """The file itself, or every ``*.parquet`` under a directory (names starting with ``.`` or ``_`` skipped, as
    pyarrow does), sorted."""
    import pyarrow.fs as pafs

    if _is_file(loc):
        return [loc]
    infos = call(loc, f"listing {uri}", loc.fs.get_file_info, pafs.FileSelector(loc.path, recursive=True))
    found = []
    for info in infos:
        relative = info.path[len(loc.path.rstrip("/")) + 1 :]
        hidden = any(part.startswith((".", "_")) for part in relative.split("/"))
        if info.type == pafs.FileType.File and info.path.endswith(".parquet") and not hidden:
            found.append(loc.child(relative))
    return sorted(found, key=lambda f: f.path)


def _manifest_files(uri: str) -> list[Location]:
    from mlk8s.preprocessing.output import committed_files

    try:
        return [resolve(f) for f in committed_files(uri)]
    except Exception as exc:  # CommitError and friends: the manifest is there but unusable
        raise TaskUsageError("--data", f"cannot read the preprocessing output at {uri}: {exc}") from exc


def _open_delta(uri: str, loc: Location, version: int | None) -> Any:
    from deltalake import DeltaTable

    table_uri, options = delta_location(uri, loc.timeout_s)
    return call(
        loc, f"reading the Delta log of {uri}", lambda: DeltaTable(table_uri, version=version, storage_options=options)
    )


def _delta_source(uri: str, loc: Location, partition: dict[str, str], version: int | None) -> DataSource:
    try:
        latest = _open_delta(uri, loc, None)
    except Exception as exc:  # deltalake raises its own error types for a damaged log
        raise TaskUsageError("--data", f"{uri} is not a readable Delta table: {' '.join(str(exc).split())}") from exc
    table = latest
    if version is not None and version != latest.version():
        if version > latest.version():
            raise TaskUsageError("--data-version", f"{uri} has no version {version}; its latest is {latest.version()}")
        try:
            table = _open_delta(uri, loc, version)
        except Exception as exc:
            raise TaskUsageError(
                "--data-version",
                f"version {version} of {uri} cannot be read (vacuumed or its log was cleaned up?): "
                f"{' '.join(str(exc).split())}",
            ) from exc
    features = set(table.protocol().reader_features or [])
    unsupported = [name for key, name in _UNSUPPORTED_DELTA_FEATURES.items() if key in features]
    if unsupported:
        raise TaskUsageError(
            "--data", f"{uri} uses Delta features this reader does not support: {', '.join(unsupported)}"
        )
    columns = list(table.metadata().partition_columns)
    unknown = sorted(set(partition) - set(columns))
    if unknown:
        raise TaskUsageError(
            "--data-partition",
            f"{', '.join(unknown)} is not a partition column of {uri} "
            f"(its partition columns: {', '.join(columns) or 'none'})",
        )
    filters = [(key, "=", value) for key, value in sorted(partition.items())] or None
    root = delta_location(uri, loc.timeout_s)[0].rstrip("/")
    files = []
    for file_uri in sorted(table.file_uris(file_pruning_predicate=filters)):
        relative = _relative(file_uri, root, loc)
        files.append(loc.child(relative) if relative is not None else resolve(file_uri, timeout_s=loc.timeout_s))
    chosen = int(table.version())
    if not files:
        where = f" partition {', '.join(f'{k}={v}' for k, v in sorted(partition.items()))}" if partition else ""
        raise TaskUsageError(
            "--data-partition" if partition else "--data", f"version {chosen} of {uri}{where} has no rows"
        )
    return DataSource(uri, "delta", _with_rows(files), chosen, partition)


def _relative(file_uri: str, root: str, loc: Location) -> str | None:
    """The path of a data file inside the table (delta-rs returns absolute URIs or paths)."""
    for prefix in (root, loc.path.rstrip("/"), "file://" + loc.path.rstrip("/")):
        if file_uri.startswith(prefix + "/"):
            return file_uri[len(prefix) + 1 :]
    return None
