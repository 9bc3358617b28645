"""The output's Parquet parts: written by the Ray tasks in parallel, one per task, committed later by the driver.

A part's name is unique to the attempt and the task that wrote it (``part-<attempt>-<random>.parquet``), never
derived from its content: two tasks that produce identical bytes write two parts, and both count. A retried
task writes a new part; the one its failed predecessor may have left is not reported, so it is never
committed, and vacuum removes it later. Parts carry Parquet page checksums (CRC32), which every reader of the
output verifies (:mod:`.output`), so a flipped bit is an error rather than other data.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time
import uuid
from dataclasses import asdict, dataclass

import pyarrow as pa

from mlk8s.preprocessing.errors import InputError
from mlk8s.preprocessing.schema import cast_to_schema
from mlk8s.storage import resolve, write_atomic

#: What a task sends back to the driver: one row per part (``path`` empty when every row was filtered out).
PART_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("input_rows", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Part:
    """One written Parquet file, as the task that wrote it reports it."""

    path: str  # relative to the table's root
    rows: int
    bytes: int
    sha256: str
    input_rows: int


def write_part(table: pa.Table, output_uri: str, directory: str, attempt_id: str, input_rows: int) -> Part:
    """Write one Parquet file (zstd, page checksums) under ``directory`` (the partition's, relative to the root)."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
    data = sink.getvalue()
    name = f"part-{attempt_id}-{uuid.uuid4().hex}.parquet"
    relative = f"{directory}/{name}" if directory else name
    root = resolve(output_uri)
    target = root.child(relative)
    root.fs.create_dir(target.path.rpartition("/")[0], recursive=True)
    write_atomic(target, data)
    return Part(relative, table.num_rows, len(data), hashlib.sha256(data).hexdigest(), input_rows)


def content_hash(parts: list[Part]) -> str:
    """One hash over the committed files' hashes, independent of the order the tasks finished in.

    It pins down exactly which bytes a commit holds (integrity). Two runs over the same input can split rows
    into files differently, so compare runs by their rows, not by this hash.
    """
    h = hashlib.sha256()
    for digest in sorted(p.sha256 for p in parts):
        h.update(digest.encode())
    return h.hexdigest()


class PartWriter:
    """The last step of the last stage: the cast to the table's schema, then one part per call."""

    def __init__(self, output_uri: str, directory: str, attempt_id: str, schema: pa.Schema) -> None:
        self.output_uri = output_uri
        self.directory = directory
        self.attempt_id = attempt_id
        self.schema = schema

    def finish(self, table: pa.Table, files: list[str] | None = None) -> pa.Table:
        """``table`` in the table's schema; a value that does not convert is bad input in ``files``."""
        try:
            return cast_to_schema(table, self.schema, extra="drop")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
            where = ", ".join(files) if files else "the input"
            raise InputError(
                f"--input: {where}: the pipeline's output does not convert to the table's schema ({exc}); fix the "
                "data, or declare types the data converts to in the spec's schema.fields"
            ) from None

    def empty(self, in_rows: int) -> pa.Table:
        """The description of a part that was not written (every row filtered out, or none read)."""
        return pa.Table.from_pylist(
            [{"path": "", "rows": 0, "bytes": 0, "sha256": "", "input_rows": in_rows}], PART_SCHEMA
        )

    def write(self, table: pa.Table, in_rows: int, files: list[str] | None = None) -> pa.Table:
        table = self.finish(table, files)
        if table.num_rows == 0:
            return self.empty(in_rows)
        part = write_part(table, self.output_uri, self.directory, self.attempt_id, in_rows)
        return pa.Table.from_pylist([asdict(part)], PART_SCHEMA)


def new_attempt_id() -> str:
    """A name for one driver's attempt, unique enough that two drivers never share one by chance."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)
