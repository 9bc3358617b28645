"""Generate the preprocessing benchmark dataset: millions of documents as Parquet files.

Rows are drawn from a pool of distinct generated documents (mlk8s.preprocessing.samples: text and HTML,
three labelled topics, ~5% empty) with fresh ids, so generating millions of rows takes seconds while every
row still goes through the full regex work. Deterministic for a given --rows/--files/--seed; an existing
dataset with the same parameters is reused.

    .venv/bin/python benchmarks/gen_documents.py [--rows 2000000] [--files 16] [--output /tmp/mlk8s-bench-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlk8s.preprocessing.samples import documents

POOL_SIZE = 20000
STAMP = "_generated.json"


def generate(output: Path, rows: int, files: int, seed: int) -> dict:
    params = {"rows": rows, "files": files, "seed": seed, "pool": POOL_SIZE}
    stamp = output / STAMP
    if stamp.exists() and json.loads(stamp.read_text()).get("params") == params:
        return json.loads(stamp.read_text())
    output.mkdir(parents=True, exist_ok=True)
    for old in output.glob("*.parquet"):
        old.unlink()
    started = time.monotonic()
    pool = documents(POOL_SIZE, seed=seed).drop_columns(["id"])
    rng = np.random.default_rng(seed)
    per_file = -(-rows // files)
    written = 0
    for index in range(files):
        n = min(per_file, rows - written)
        if n <= 0:
            break
        picks = rng.integers(0, POOL_SIZE, size=n)
        table = pool.take(pa.array(picks))
        ids = pa.array([f"bench-{written + i:09d}" for i in range(n)], pa.string())
        table = table.add_column(0, "id", ids)
        pq.write_table(table, output / f"docs-{index:03d}.parquet", row_group_size=65536, compression="zstd")
        written += n
    info = {
        "params": params,
        "rows": written,
        "bytes_on_disk": sum(p.stat().st_size for p in output.glob("*.parquet")),
        "bytes_uncompressed": sum(
            pq.ParquetFile(p).metadata.row_group(i).total_byte_size
            for p in output.glob("*.parquet")
            for i in range(pq.ParquetFile(p).metadata.num_row_groups)
        ),
        "seconds": round(time.monotonic() - started, 1),
    }
    stamp.write_text(json.dumps(info))
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", default="/tmp/mlk8s-bench-docs")
    args = parser.parse_args()
    print(json.dumps(generate(Path(args.output), args.rows, args.files, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
