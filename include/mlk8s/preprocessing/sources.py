"""Where documents come from: a local path or a pyarrow.fs URI holding Parquet, JSON lines or raw files.

The input is listed and its format decided once, up front, so a missing or unreadable input is a usage
error before any Ray work starts, and the Ray pipeline and the single-process reference read exactly the
same files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.storage import UriError, resolve

FORMATS: dict[str, tuple[str, ...]] = {
    "parquet": (".parquet", ".pq"),
    "jsonl": (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".json.gz"),
    "raw": (".txt", ".text", ".md", ".html", ".htm", ".xhtml"),
}
FORMAT_CHOICES = ("auto", *FORMATS)


class InputError(ValueError):
    """The input cannot be read as asked; the message names the flag and the fix."""


@dataclass(frozen=True)
class InputSource:
    uri: str
    filesystem: pafs.FileSystem
    root: str
    files: tuple[str, ...]
    format: str
    total_bytes: int

    def describe(self) -> str:
        return f"{len(self.files)} {self.format} file(s), {self.total_bytes} bytes under {self.uri}"


def resolve_filesystem(uri: str, flag: str = "--input") -> tuple[pafs.FileSystem, str]:
    """A filesystem and the path inside it (see :mod:`mlk8s.storage`), or :class:`InputError` naming ``flag``."""
    try:
        location = resolve(uri)
    except UriError as exc:
        raise InputError(f"{flag}: {exc}") from None
    return location.fs, location.path


def _format_of(path: str) -> str | None:
    lower = path.lower()
    for name, suffixes in FORMATS.items():
        if lower.endswith(suffixes):
            return name
    return None


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def open_input(uri: str, input_format: str = "auto") -> InputSource:
    """List the input's files and decide their format, or raise :class:`InputError`."""
    if input_format not in FORMAT_CHOICES:
        raise InputError(f"--input-format: {input_format!r} is not one of {', '.join(FORMAT_CHOICES)}")
    fs, root = resolve_filesystem(uri)
    try:
        info = fs.get_file_info(root)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"--input: cannot read {uri!r} ({exc}); check the URI and the credentials") from None
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"--input: {uri!r} does not exist; pass an existing file or directory")
    if info.type == pafs.FileType.Directory:
        from mlk8s.preprocessing.commit import read_manifest

        manifest = read_manifest(uri)
        if manifest is not None:
            # The committed output of an earlier preprocessing run: read exactly what its manifest names.
            files = tuple(f"{root.rstrip('/')}/{part['path']}" for part in manifest["files"])
            sizes = sum(int(part["bytes"]) for part in manifest["files"])
            return InputSource(uri, fs, root, files, "parquet", sizes)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        candidates = [i for i in infos if i.type == pafs.FileType.File and not _hidden(i.path[len(root) :].lstrip("/"))]
        prefix = root
    else:
        candidates = [info]
        prefix = os.path.dirname(root)
    if input_format == "auto":
        found = {_format_of(i.path) for i in candidates}
        known = found - {None}
        if not candidates:
            raise InputError(f"--input: {uri!r} holds no files (names starting with '_' or '.' are ignored)")
        if len(known) > 1:
            raise InputError(
                f"--input: {uri!r} mixes formats {sorted(k for k in known if k)}; point --input at one kind of "
                "file, or pass --input-format to pick one"
            )
        if not known:
            extensions = ", ".join(s for group in FORMATS.values() for s in group)
            raise InputError(
                f"--input: no file under {uri!r} has a known extension ({extensions}); pass --input-format"
            )
        fmt = known.pop()
        assert fmt is not None
        chosen = [i for i in candidates if _format_of(i.path) == fmt]
    else:
        fmt = input_format
        chosen = [i for i in candidates if _format_of(i.path) in (fmt, None)]
        if not chosen:
            raise InputError(f"--input: no {fmt} files under {uri!r}")
    chosen.sort(key=lambda i: i.path)
    return InputSource(uri, fs, prefix, tuple(i.path for i in chosen), fmt, sum(max(i.size or 0, 0) for i in chosen))


def iter_tables(source: InputSource, batch_rows: int = 65536) -> Iterator[pa.Table]:
    """The input as Arrow tables, one process, streaming file by file (the reference and the dry run)."""
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    from mlk8s.preprocessing.transforms import raw_files_to_documents

    fs = source.filesystem
    if source.format == "parquet":
        for path in source.files:
            with fs.open_input_file(path) as fh:
                parquet = pq.ParquetFile(fh)
                for batch in parquet.iter_batches(batch_size=batch_rows):
                    yield pa.Table.from_batches([batch])
    elif source.format == "jsonl":
        for path in source.files:
            compression = "gzip" if path.endswith(".gz") else None
            with fs.open_input_stream(path, compression=compression) as fh:
                table = pajson.read_json(fh)
            for offset in range(0, table.num_rows, batch_rows):
                yield table.slice(offset, batch_rows)
    else:
        chunk: list[tuple[str, bytes]] = []
        for path in source.files:
            with fs.open_input_stream(path) as fh:
                chunk.append((path, bytes(fh.read())))
            if len(chunk) >= batch_rows:
                yield raw_files_to_documents(_raw_table(chunk), root=source.root)
                chunk = []
        if chunk:
            yield raw_files_to_documents(_raw_table(chunk), root=source.root)


def _raw_table(chunk: list[tuple[str, bytes]]) -> pa.Table:
    return pa.table({"bytes": pa.array([b for _, b in chunk], pa.binary()), "path": [p for p, _ in chunk]})


def read_sample(source: InputSource, rows: int = 64) -> pa.Table:
    """The first ``rows`` records, for validating the pipeline before the real run."""
    for table in iter_tables(source, batch_rows=rows):
        return table.slice(0, rows)
    return pa.table({})


#: Raw files per work unit: small files, so a unit of one file would be all task overhead.
RAW_FILES_PER_UNIT = 256
#: Above this many Parquet row groups, a unit is a whole file (listing row groups costs a footer read each).
MAX_ROW_GROUP_UNITS = 20000
#: Uncompressed JSON lines files are cut into byte ranges of about this size (a range holds the lines that
#: start inside it), so one large file is read by many tasks and never whole by one.
JSONL_UNIT_BYTES = 256 * 1024
#: Tasks per CPU the input is cut into, at least: enough that the last round of tasks is short (a CPU that
#: finishes early idles for at most one small task) and a pool that grows mid-run gets work.
TASKS_PER_CPU = 8
#: A task reads at most about this much (uncompressed), however large the input: it bounds a task's memory
#: and the work a retry repeats.
MAX_TASK_BYTES = 128 * 1024 * 1024


def work_units(source: InputSource) -> list[dict[str, Any]]:
    """The input cut into its smallest independent pieces: a Parquet row group, a JSON lines file, or a
    chunk of raw files, each with an estimate of its uncompressed size (``bytes``).

    Ray Data's own file readers group files into as many read tasks as there are CPUs, by count, so one
    task can get most of the rows while the other CPUs idle; :func:`plan_tasks` groups these pieces into
    tasks of about equal size instead.
    """
    import pyarrow.parquet as pq

    if source.format == "raw":
        files = list(source.files)
        sizes = _file_sizes(source)
        return [
            {
                "paths": files[i : i + RAW_FILES_PER_UNIT],
                "row_group": -1,
                "bytes": sum(sizes.get(f, 0) for f in files[i : i + RAW_FILES_PER_UNIT]),
            }
            for i in range(0, len(files), RAW_FILES_PER_UNIT)
        ]
    if source.format == "jsonl":
        sizes = _file_sizes(source)
        ranges: list[dict[str, Any]] = []
        for path in source.files:
            size = sizes.get(path, 0)
            if path.endswith(".gz") or size <= JSONL_UNIT_BYTES:  # gzip cannot be read from an offset
                ranges.append({"paths": [path], "row_group": -1, "bytes": size})
                continue
            for start in range(0, size, JSONL_UNIT_BYTES):
                end = min(start + JSONL_UNIT_BYTES, size)
                ranges.append(
                    {"paths": [path], "row_group": -1, "range": [start, end], "file_bytes": size, "bytes": end - start}
                )
        return ranges
    if len(source.files) > MAX_ROW_GROUP_UNITS:
        sizes = _file_sizes(source)
        return [{"paths": [path], "row_group": -1, "bytes": sizes.get(path, 0)} for path in source.files]
    units: list[dict[str, Any]] = []
    for path in source.files:
        with source.filesystem.open_input_file(path) as fh:
            metadata = pq.ParquetFile(fh).metadata
        units.extend(
            {"paths": [path], "row_group": g, "bytes": metadata.row_group(g).total_byte_size}
            for g in range(metadata.num_row_groups)
        )
    return units


def _file_sizes(source: InputSource) -> dict[str, int]:
    infos = source.filesystem.get_file_info(list(source.files))
    return {info.path: max(info.size or 0, 0) for info in infos}


def plan_tasks(
    units: list[dict[str, Any]],
    cpus: float,
    *,
    tasks_per_cpu: int = TASKS_PER_CPU,
    max_task_bytes: int = MAX_TASK_BYTES,
) -> list[list[dict[str, Any]]]:
    """Consecutive work units grouped into Ray tasks of about equal size.

    Fewer, larger tasks mean fewer output parts and less per-task bookkeeping; at least ``tasks_per_cpu``
    tasks per CPU keep the end of the run balanced, and no task reads more than ``max_task_bytes``. A unit
    larger than the target is a task of its own (units are never split).
    """
    if not units:
        return []
    sizes = [max(int(u.get("bytes", 0)), 0) for u in units]
    if not any(sizes):
        sizes = [1] * len(units)  # sizes unknown: group by count
    total = sum(sizes)
    wanted = max(1, int(max(cpus, 1) * tasks_per_cpu))
    target = min(max_task_bytes, max(1, -(-total // wanted)))
    tasks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for unit, unit_bytes in zip(units, sizes, strict=True):
        # Close the task when this unit would take it past the target by more than half the unit, so
        # tasks land on whichever side of the target is nearer.
        if current and size + unit_bytes / 2 > target:
            tasks.append(current)
            current, size = [], 0
        current.append(unit)
        size += unit_bytes
    tasks.append(current)
    return tasks


def read_unit(source: InputSource, unit: dict[str, Any]) -> pa.Table:
    """One work unit as a table (raw files already turned into documents)."""
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    from mlk8s.preprocessing.transforms import raw_files_to_documents

    fs = source.filesystem
    paths = list(unit["paths"])
    if source.format == "raw":
        chunk = []
        for path in paths:
            with fs.open_input_stream(path) as fh:
                chunk.append((path, bytes(fh.read())))
        return raw_files_to_documents(_raw_table(chunk), root=source.root)
    if source.format == "jsonl":
        if "range" in unit:
            start, end = unit["range"]
            data = _read_line_range(fs, paths[0], int(start), int(end))
            if not data.strip():
                return pa.table({})  # every line of the range starts in a neighbour's range
            options = pajson.ParseOptions(
                explicit_schema=_jsonl_schema(source, paths[0], int(unit.get("file_bytes", 0))),
                unexpected_field_behavior="infer",
            )
            return pajson.read_json(pa.BufferReader(data), parse_options=options)
        compression = "gzip" if paths[0].endswith(".gz") else None
        with fs.open_input_stream(paths[0], compression=compression) as fh:
            return pajson.read_json(fh)
    with fs.open_input_file(paths[0]) as fh:
        parquet = pq.ParquetFile(fh)
        if unit["row_group"] < 0:
            return parquet.read()
        return parquet.read_row_group(unit["row_group"])


_JSONL_SCHEMAS: dict[tuple[str, str, int], pa.Schema] = {}


def _jsonl_schema(source: InputSource, path: str, file_bytes: int) -> pa.Schema:
    """The types of a JSON lines file, inferred once per process from its first range.

    Every range of the file is parsed with these types, so a field keeps one type across the file's ranges
    and parts (inferring range by range could make a number int64 in one part and double in another).
    Fields null in the whole first range are left to each range to infer.
    """
    import pyarrow.json as pajson

    key = (source.uri, path, file_bytes)  # a Ray worker lives on: a file rewritten since is inferred anew
    if key not in _JSONL_SCHEMAS:
        data = _read_line_range(source.filesystem, path, 0, JSONL_UNIT_BYTES)
        inferred = pajson.read_json(pa.BufferReader(data)).schema if data.strip() else pa.schema([])
        if len(_JSONL_SCHEMAS) >= 256:
            _JSONL_SCHEMAS.clear()
        _JSONL_SCHEMAS[key] = pa.schema([f for f in inferred if not pa.types.is_null(f.type)])
    return _JSONL_SCHEMAS[key]


def _read_line_range(fs: pafs.FileSystem, path: str, start: int, end: int, chunk: int = 64 * 1024) -> bytes:
    """The bytes of every line that starts at an offset in ``[start, end)``, each with its newline.

    A line starts at offset 0 or right after a newline. Cutting a file at any offsets this way gives each
    line to exactly one range, so reading every range reads every record exactly once.
    """
    with fs.open_input_file(path) as fh:
        size = fh.size()
        begin = start
        if start > 0:
            # Skip the rest of the line that byte start-1 is in: that line belongs to the range before.
            fh.seek(start - 1)
            while True:
                piece = bytes(fh.read(chunk))
                if not piece:
                    return b""
                newline = piece.find(b"\n")
                if newline >= 0:
                    begin = fh.tell() - len(piece) + newline + 1
                    break
        if begin >= end:
            return b""
        fh.seek(begin)
        data = bytearray(fh.read(end - begin))
        # Finish the last line, which may run past the end of the range.
        while data and not data.endswith(b"\n") and fh.tell() < size:
            piece = bytes(fh.read(chunk))
            newline = piece.find(b"\n")
            if newline >= 0:
                data += piece[: newline + 1]
                break
            data += piece
        return bytes(data)


def ray_dataset(source: InputSource, cpus: float) -> Any:
    """A Ray Dataset of tasks (one block each, one row per work unit, see :func:`plan_tasks`); the first
    stage reads the units with :func:`read_unit`."""
    import json

    import ray.data

    tasks = plan_tasks(work_units(source), cpus)
    items = [{"units": json.dumps(task)} for task in tasks]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items)))
