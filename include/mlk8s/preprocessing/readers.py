"""Reading the input's records: the whole input in one process (the reference and the dry run), or one work
unit inside a Ray task (:func:`read_unit`; see :mod:`.work_units` for how the input is cut).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.preprocessing import work_units
from mlk8s.preprocessing.errors import InputError
from mlk8s.preprocessing.sources import InputSource


def iter_tables(source: InputSource, batch_rows: int = 65536) -> Iterator[pa.Table]:
    """The input as Arrow tables, one process, streaming file by file (the reference and the dry run)."""
    from mlk8s.preprocessing.transforms import raw_files_to_documents

    fs = source.filesystem
    if source.format == "parquet":
        for path in source.files:
            with _parquet_errors(path), fs.open_input_file(path) as fh:
                parquet = _parquet_file(fh)
                for batch in parquet.iter_batches(batch_size=batch_rows):
                    yield _with_file_columns(source, path, pa.Table.from_batches([batch]))
    elif source.format == "jsonl":
        for path in source.files:
            table = parse_jsonl(path, _read_all(fs, path), first_line=1)
            for offset in range(0, table.num_rows, batch_rows):
                yield table.slice(offset, batch_rows)
    else:
        chunk: list[tuple[str, bytes]] = []
        for path in source.files:
            chunk.append((path, _read_all(fs, path)))
            if len(chunk) >= batch_rows:
                yield raw_files_to_documents(_raw_table(chunk), root=source.root)
                chunk = []
        if chunk:
            yield raw_files_to_documents(_raw_table(chunk), root=source.root)


def _raw_table(chunk: list[tuple[str, bytes]]) -> pa.Table:
    return pa.table({"bytes": pa.array([b for _, b in chunk], pa.binary()), "path": [p for p, _ in chunk]})


def _read_all(fs: pafs.FileSystem, path: str) -> bytes:
    compression = "gzip" if path.endswith(".gz") else None
    try:
        with fs.open_input_stream(path, compression=compression) as fh:
            return bytes(fh.read())
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"--input: {path}: cannot be read ({exc})") from None


def _parquet_file(fh: Any) -> Any:
    import pyarrow.parquet as pq

    return pq.ParquetFile(fh, page_checksum_verification=True)


@contextmanager
def _parquet_errors(path: str) -> Iterator[None]:
    """A Parquet file that cannot be read (truncated, not Parquet, a page failing its checksum) is bad input."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"--input: {path}: not a readable Parquet file ({exc})") from None


def _with_file_columns(source: InputSource, path: str, table: pa.Table) -> pa.Table:
    for name, value in source.file_columns.get(path, {}).items():
        table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    return table


def parse_jsonl(path: str, data: bytes, *, first_line: int, schema: pa.Schema | None = None) -> pa.Table:
    """Parse JSON lines; a record that does not parse is :class:`InputError` naming the file and its 1-based
    line (``first_line`` is the line number ``data`` starts at)."""
    try:
        return _parse_json(data, schema)
    except pa.ArrowException as exc:
        raise _locate_json_error(path, data, first_line, exc) from None


def _parse_json(data: bytes, schema: pa.Schema | None) -> pa.Table:
    import pyarrow.json as pajson

    options = None
    if schema is not None:
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    return pajson.read_json(pa.BufferReader(data), parse_options=options)


def _locate_json_error(path: str, data: bytes, first_line: int, exc: Exception) -> InputError:
    """Find the line pyarrow failed on (its messages count rows per block, from 0) by parsing line by line."""
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            return InputError(f"--input: {path}: line {number}: invalid JSON ({error}); fix or remove the record")
        if not isinstance(value, dict):
            return InputError(
                f"--input: {path}: line {number}: a JSON lines record must be an object, got {type(value).__name__}"
            )
    last = first_line + max(len(lines) - 1, 0)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"--input: {path}: lines {first_line}-{last}: {reason}")


def read_sample(source: InputSource, rows: int = 64) -> pa.Table:
    """The first ``rows`` records, for validating the pipeline before the real run."""
    for table in iter_tables(source, batch_rows=rows):
        return table.slice(0, rows)
    return pa.table({})


def read_unit(source: InputSource, unit: dict[str, Any]) -> pa.Table:
    """One work unit as a table (raw files already turned into documents)."""
    from mlk8s.preprocessing.transforms import raw_files_to_documents

    fs = source.filesystem
    paths = list(unit["paths"])
    if source.format == "raw":
        return raw_files_to_documents(_raw_table([(p, _read_all(fs, p)) for p in paths]), root=source.root)
    if source.format == "jsonl":
        if "range" not in unit:
            return parse_jsonl(paths[0], _read_all(fs, paths[0]), first_line=1)
        start, end = unit["range"]
        try:
            begin, data = _read_line_range(fs, paths[0], int(start), int(end))
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"--input: {paths[0]}: cannot be read ({exc})") from None
        if not data.strip():
            return pa.table({})  # every line of the range starts in a neighbour's range
        schema = _jsonl_schema(source, paths[0], int(unit.get("file_bytes", 0)))
        try:
            return _parse_json(data, schema)
        except pa.ArrowException as exc:
            # Only on the error path: count the lines before the range, so the message gives the file's line.
            raise _locate_json_error(paths[0], data, 1 + _newlines_before(fs, paths[0], begin), exc) from None
    with _parquet_errors(paths[0]), fs.open_input_file(paths[0]) as fh:
        parquet = _parquet_file(fh)
        table = parquet.read() if unit["row_group"] < 0 else parquet.read_row_group(unit["row_group"])
    return _with_file_columns(source, paths[0], table)


def _newlines_before(fs: pafs.FileSystem, path: str, offset: int, chunk: int = 1 << 20) -> int:
    count = 0
    with fs.open_input_file(path) as fh:
        while fh.tell() < offset:
            count += bytes(fh.read(min(chunk, offset - fh.tell()))).count(b"\n")
    return count


_JSONL_SCHEMAS: dict[tuple[str, str, int], pa.Schema] = {}


def _jsonl_schema(source: InputSource, path: str, file_bytes: int) -> pa.Schema:
    """The types of a JSON lines file, inferred once per process from its first range.

    Every range of the file is parsed with these types, so a field keeps one type across the file's ranges
    and parts (inferring range by range could make a number int64 in one part and double in another).
    Fields null in the whole first range are left to each range to infer.
    """
    key = (source.uri, path, file_bytes)  # a Ray worker lives on: a file rewritten since is inferred anew
    if key not in _JSONL_SCHEMAS:
        _, data = _read_line_range(source.filesystem, path, 0, work_units.JSONL_UNIT_BYTES)
        inferred = parse_jsonl(path, data, first_line=1).schema if data.strip() else pa.schema([])
        if len(_JSONL_SCHEMAS) >= 256:
            _JSONL_SCHEMAS.clear()
        _JSONL_SCHEMAS[key] = pa.schema([f for f in inferred if not pa.types.is_null(f.type)])
    return _JSONL_SCHEMAS[key]


def _read_line_range(fs: pafs.FileSystem, path: str, start: int, end: int, chunk: int = 64 * 1024) -> tuple[int, bytes]:
    """The bytes of every line that starts at an offset in ``[start, end)``, each with its newline.

    A line starts at offset 0 or right after a newline. Cutting a file at any offsets this way gives each
    line to exactly one range, so reading every range reads every record exactly once. Returns the offset the
    first of those lines starts at, and the bytes.
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
                    return size, b""
                newline = piece.find(b"\n")
                if newline >= 0:
                    begin = fh.tell() - len(piece) + newline + 1
                    break
        if begin >= end:
            return begin, b""
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
        return begin, bytes(data)
