"""Training inputs the tests write: Parquet files and Delta tables with an ``embedding`` and a ``label`` column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa


def table(rows: int, *, dim: int = 6, seed: int = 0, run_key: str | None = None, labels: Any = None) -> pa.Table:
    """``rows`` random vectors labelled by the sign of their first value (learnable, so training converges)."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(rows, dim)).astype(np.float32)
    columns: dict[str, Any] = {
        "id": np.arange(rows),
        "embedding": pa.array(list(emb), type=pa.list_(pa.float32())),
        "label": (emb[:, 0] > 0).astype(np.int64) if labels is None else labels,
    }
    if run_key is not None:
        columns["run_key"] = [run_key] * rows
    return pa.table(columns)


def write_parquet(path: Path, t: pa.Table) -> Path:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path)
    return path


def write_delta(path: Path, t: pa.Table, *, mode: str = "append", partition_by: list[str] | None = None) -> int:
    """Append (or overwrite with) ``t``; the new version."""
    from deltalake import DeltaTable, write_deltalake

    write_deltalake(str(path), t, mode=mode, partition_by=partition_by)  # type: ignore[arg-type]
    return int(DeltaTable(str(path)).version())
