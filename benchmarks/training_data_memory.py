"""Training's peak memory against dataset size: it must stay flat as the data grows (issue 14).

``python -m mlk8s.training`` trains one epoch on Parquet inputs of three sizes (the same rows, repeated: 64-float
embeddings, 50k, 200k and 800k rows, i.e. 13, 51 and 205 MB of features) in a subprocess whose peak anonymous
memory (RssAnon, sampled every 10 ms from /proc) is recorded. Anonymous memory is what a pod's memory limit
and the OOM killer see growing; the memory-mapped feature cache lives in the page cache, which the kernel can
evict, so it is reported (peak VmRSS) but not gated on.

Baseline, in the same run: the same three inputs loaded the way training read them before (one table of the
whole input, converted to a NumPy matrix) in a subprocess, with the same sampling. Targets: training's peak grows
by at most 25% of the feature bytes added between the smallest and the largest input, and by at most 0.2x
the baseline's growth. Prints one JSON object; exits 1 on a miss. The machine may be shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SIZES = (50_000, 200_000, 800_000)
DIM = 64
TARGET_SHARE_OF_DATA = 0.25
TARGET_SHARE_OF_BASELINE = 0.2

BASELINE = """
import sys
import numpy as np, pyarrow as pa, pyarrow.dataset as pads
table = pads.dataset(sys.argv[1], format="parquet").to_table(columns=["embedding", "label"])
emb = table.column("embedding").combine_chunks()
x = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(emb), -1)
y = table.column("label").to_numpy().astype(np.int64)
print(x.shape, int(y.sum()))
"""


def write_input(root: Path, rows: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    block = 50_000
    emb = rng.normal(size=(block, DIM)).astype(np.float32)
    chunk = pa.table(
        {
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM).cast(pa.list_(pa.float32())),
            "label": (emb[:, 0] > 0).astype(np.int64),
        }
    )
    directory = root / f"rows-{rows}"
    directory.mkdir()
    with pq.ParquetWriter(directory / "part-0.parquet", chunk.schema) as writer:
        for _ in range(rows // block):
            writer.write_table(chunk)
    return directory


def _kb(status: str, key: str) -> int:
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; its peak RssAnon and VmRSS in MB, and its wall seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    anon = rss = 0
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            break
        anon, rss = max(anon, _kb(status, "RssAnon")), max(rss, _kb(status, "VmRSS"))
        time.sleep(0.01)
    proc.wait()
    reader.join(5)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(err[-20:])}")
    return {"peak_anon_mb": anon / 1024, "peak_rss_mb": rss / 1024, "seconds": time.perf_counter() - started}


def main() -> int:
    results: dict[str, list[dict[str, float]]] = {"training": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-mem-") as tmp:
        root = Path(tmp)
        for rows in SIZES:
            data = write_input(root, rows)
            env = dict(os.environ, MLK8S_XCOM_DIR=str(root / f"xcom-{rows}"))
            train = [sys.executable, "-m", "mlk8s.training", "--data", str(data), "--epochs", "1"]
            train += ["--checkpoint-uri", str(root / f"ckpt-{rows}"), "--output-uri", str(root / f"out-{rows}")]
            train += ["--batch-size", "1024", "--task-option", "hidden=32", "--task-option", "layers=1"]
            train += ["--log-level", "WARNING"]
            results["training"].append({"rows": rows, **peak(train, env)})
            results["baseline"].append({"rows": rows, **peak([sys.executable, "-c", BASELINE, str(data)], env)})
    feature_growth_mb = (SIZES[-1] - SIZES[0]) * DIM * 4 / 2**20
    ours = results["training"][-1]["peak_anon_mb"] - results["training"][0]["peak_anon_mb"]
    theirs = results["baseline"][-1]["peak_anon_mb"] - results["baseline"][0]["peak_anon_mb"]
    report = {
        "figure": "training peak memory vs dataset size",
        "runs": results,
        "feature_bytes_growth_mb": feature_growth_mb,
        "training_peak_anon_growth_mb": ours,
        "baseline_whole_table_peak_anon_growth_mb": theirs,
        "growth_share_of_data": ours / feature_growth_mb,
        "growth_share_of_baseline": ours / theirs if theirs > 0 else None,
        "target_share_of_data_at_most": TARGET_SHARE_OF_DATA,
        "target_share_of_baseline_at_most": TARGET_SHARE_OF_BASELINE,
        "rule": "peak RssAnon sampled every 10 ms; growth = largest minus smallest input",
    }
    report["ok"] = (
        ours <= TARGET_SHARE_OF_DATA * feature_growth_mb and theirs > 0 and ours <= TARGET_SHARE_OF_BASELINE * theirs
    )
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
