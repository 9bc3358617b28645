"""Cost as the work grows: the preprocessing pipeline (no embeddings) at three dataset sizes, same run.

For each size (default 0.3M, 1M and 3M rows, files in proportion so every file holds ~125k rows), one warm-up
then one timed run of ``run_pipeline`` on a real local Ray cluster, and one more run with memory samplers on
(every 0.5 s: the driver's RSS, and each Ray worker process's PSS, so shared pages such as the object store
count once). The memory run is separate because reading /proc/<pid>/smaps costs CPU.

Targets (the pipeline streams):
- time grows linearly: seconds per million rows at the largest size <= 1.15x that at the middle size (the
  smallest is reported; its fixed costs, ~1-2 s of starting Ray Data's workers, weigh too much to gate on);
- memory stays flat: the largest per-worker peak and the driver's peak at the largest size are each within
  1.25x (+ 64 MB) of the same peak at the smallest size.

    .venv/bin/python benchmarks/preprocessing_scaling.py [--sizes 300000,1000000,3000000]

Prints one JSON object; exits 1 when a target is missed. The machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_documents import generate

from mlk8s.local_ray import LocalRayCluster
from mlk8s.preprocessing.run import run_pipeline
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import parse_spec

SPEC = {"steps": ["html_to_text", "clean_text", "text_features", "non_empty_text"]}
ROWS_PER_FILE = 125_000
TARGET_TIME_GROWTH = 1.15
TARGET_MEMORY_GROWTH = 1.25
MEMORY_SLACK = 64 * 1024 * 1024
MB = 1024 * 1024


class ProcessPeaks:
    """Per-process peak memory of a set of process trees, sampled in a background thread."""

    def __init__(self, roots: list[int], *, pss: bool) -> None:
        self.roots, self.pss = roots, pss
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for pid in self.roots:
            try:
                procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    used = proc.memory_full_info().pss if self.pss else proc.memory_info().rss
                    name = " ".join(proc.cmdline()[:1])
                except psutil.Error:
                    continue
                if used > self.peaks.get(proc.pid, ("", 0))[1]:
                    self.peaks[proc.pid] = (name, used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.5)

    def __enter__(self) -> ProcessPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def workers(self) -> list[int]:
        """Peaks of the processes that ran the pipeline's work (Ray Data's map workers)."""
        return [used for name, used in self.peaks.values() if "MapWorker" in name or "MapBatches" in name]


def measure(spec: Any, data: Path, work: Path, driver_pid: int, node_pids: list[int]) -> dict[str, Any]:
    source = open_input(str(data))
    run_pipeline(spec, source, str(work / "warm"))
    started = time.perf_counter()
    result = run_pipeline(spec, source, str(work / "timed"))
    seconds = time.perf_counter() - started
    with ProcessPeaks(node_pids, pss=True) as cluster, ProcessPeaks([driver_pid], pss=False) as driver:
        run_pipeline(spec, source, str(work / "memory"))
    workers = cluster.workers() or [0]
    return {
        "rows": result["input_rows"],
        "seconds": round(seconds, 2),
        "s_per_million_rows": round(seconds / result["input_rows"] * 1e6, 3),
        "driver_peak_rss_mb": round(driver.peaks.get(driver_pid, ("", 0))[1] / MB),
        "worker_peak_pss_mb": [round(w / MB) for w in sorted(workers, reverse=True)],
        "_driver": driver.peaks.get(driver_pid, ("", 0))[1],
        "_worker": max(workers),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="300000,1000000,3000000")
    parser.add_argument("--data", default="/tmp/mlk8s-bench-scaling")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) != 3:
        parser.error("--sizes: give three comma-separated row counts, e.g. 300000,1000000,3000000")
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    import ray
    import ray.data

    for rows in sizes:
        generate(Path(args.data) / str(rows), rows, max(1, rows // ROWS_PER_FILE), seed=11)
    spec = parse_spec(SPEC)
    work = Path(tempfile.mkdtemp(prefix="mlk8s-scaling-"))
    ray_temp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's session logs: removed at the end
    cluster = LocalRayCluster(ray_temp, head_cpus=args.cpus)
    results = []
    try:
        cluster.start()
        cluster.enable_auth_in_this_process()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        nodes = [record.pid for record in cluster.records()]
        for rows in sizes:
            results.append(measure(spec, Path(args.data) / str(rows), work / str(rows), os.getpid(), nodes))
            shutil.rmtree(work / str(rows), ignore_errors=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(ray_temp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    small, middle, large = results
    time_growth = large["s_per_million_rows"] / middle["s_per_million_rows"]
    worker_growth = large["_worker"] / (small["_worker"] + MEMORY_SLACK)
    driver_growth = large["_driver"] / (small["_driver"] + MEMORY_SLACK)
    met = time_growth <= TARGET_TIME_GROWTH and max(worker_growth, driver_growth) <= TARGET_MEMORY_GROWTH
    report = {
        "figure": "preprocessing cost as the data grows (html_to_text, clean_text, text_features, non_empty_text)",
        "ray_cpus": args.cpus,
        "sizes": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
        "time_per_row_largest_vs_middle": round(time_growth, 3),
        "target_time_growth": TARGET_TIME_GROWTH,
        "worker_peak_largest_vs_smallest_plus_64mb": round(worker_growth, 3),
        "driver_peak_largest_vs_smallest_plus_64mb": round(driver_growth, 3),
        "target_memory_growth": TARGET_MEMORY_GROWTH,
        "met": met,
    }
    print(json.dumps(report))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
