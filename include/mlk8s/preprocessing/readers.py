"""Reading the input's records: the whole input in one process (the reference and the dry run), or one work
unit inside a Ray task (:func:`read_unit`; see :mod:`.work_units` for how the input is cut).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.preprocessing import work_units
from mlk8s.preprocessing.sources import InputSource


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
        data = _read_line_range(source.filesystem, path, 0, work_units.JSONL_UNIT_BYTES)
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
