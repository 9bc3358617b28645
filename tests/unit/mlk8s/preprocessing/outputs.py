"""Committed outputs for the tests, built with the product's own writer and commit (no Ray): a Delta table with
one partition per call, and an output of the old manifest layout written by hand (runs no longer write it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlk8s.preprocessing.commit import AppTransaction, Commit, commit_parts
from mlk8s.preprocessing.parts import write_part
from mlk8s.preprocessing.table import OutputTable, Partition, open_table


def rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(start, start + n)], "x": list(range(start, start + n))})


def table_for(uri: str, key: str | None = "run_key", value: str = "r1", schema: pa.Schema | None = None) -> OutputTable:
    partition = Partition.parse([f"{key}={value}"] if key else [])
    return open_table(uri, partition, schema or rows(0, 1).schema)


def commit_rows(
    uri: str,
    tables: list[pa.Table],
    *,
    key: str | None = "run_key",
    value: str = "r1",
    txn: AppTransaction | None = None,
    attempt: str = "a1",
) -> tuple[OutputTable, Commit]:
    """Stage one part per table and commit them, as a run of the pipeline would."""
    table = table_for(uri, key, value, tables[0].schema)
    parts = [write_part(t, uri, table.partition.directory, attempt, t.num_rows) for t in tables]
    summary: dict[str, Any] = {"output_rows": sum(t.num_rows for t in tables), "attempt_id": attempt}
    return table, commit_parts(table, parts, txn=txn, summary=summary)


def legacy_output(root: Path, tables: list[pa.Table], attempt: str = "old") -> Path:
    """An output in the layout runs wrote before Delta: parts under _attempts/, committed by _manifest.json."""
    files = []
    (root / "_attempts" / attempt).mkdir(parents=True)
    for index, table in enumerate(tables):
        relative = f"_attempts/{attempt}/part-{index}.parquet"
        pq.write_table(table, root / relative)
        data = (root / relative).read_bytes()
        files.append(
            {"path": relative, "rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    manifest = {"format": "mlk8s.preprocessing/v1", "attempt_id": attempt, "files": files}
    (root / "_manifest.json").write_text(json.dumps(manifest))
    return root
