"""Throughput of the preprocessing pipeline (features + cleaning + filter) vs two baselines, same run.

1. single process: the same transform functions over the same Parquet files with plain pyarrow, streaming
   batch by batch and writing Parquet (the fastest honest one-process implementation we have);
2. hand-written Ray Data: read_parquet -> map_batches(the same transforms) -> write_parquet, no staging,
   no commit, no row accounting;
3. ours: mlk8s.preprocessing.run.run_pipeline (parts written by the workers, one Delta commit by the driver,
   filtered-row counts); the commit's own cost is reported as ours_commit_s.

The Ray runs use a real local cluster (LocalRayCluster, separate node processes, token auth) with as many
CPUs as the machine has. Embeddings are excluded: all-MiniLM-L6-v2 on CPU does a few hundred rows/s, so
millions of rows would take hours (see preprocessing_embeddings.py for that figure).

Peak memory is sampled every 0.5 s in a separate, untimed run of ours over half the data: the driver's RSS,
and the proportional set size (PSS: shared pages such as Ray's object store counted once) of the whole
cluster. Reading PSS means reading /proc/<pid>/smaps of every Ray process, about 50 ms of CPU per sample on
this machine (10% of a core at 2 Hz), so sampling during the timed runs would slow ours and not the
baselines. The pipeline streams: the driver only ever holds the per-part metadata, and the cluster's
footprint stays bounded while the dataset passes through.

    .venv/bin/python benchmarks/preprocessing_throughput.py [--rows 3000000] [--rounds 2]

Seconds are per run over the whole dataset (the mean of the rounds); rates and ratios use all rounds.

Targets: ours >= 1.6x the single process, >= 0.95x hand-written Ray Data, and >= 95% of the two-process
ceiling. Prints one JSON object; exits 1 when a target is missed.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_documents import generate

from mlk8s.local_ray import LocalRayCluster
from mlk8s.preprocessing.run import run_pipeline
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import parse_spec
from mlk8s.preprocessing.stages import apply_step

SPEC = {"steps": ["html_to_text", "clean_text", "text_features", "non_empty_text"]}
TARGET_VS_SINGLE = 1.6
TARGET_VS_HAND = 0.95
#: ours / single-process as a share of what two plain processes reach over one, measured in the same run.
TARGET_SHARE_OF_CEILING = 0.95
MB = 1024 * 1024


class PeakMemory:
    """Samples memory of a set of process trees in a background thread."""

    def __init__(self, roots: list[int], *, pss: bool, children: bool = True) -> None:
        self.roots = roots
        self.pss = pss
        self.children = children
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        procs: list[psutil.Process] = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                procs.append(root)
                if self.children:
                    procs.extend(root.children(recursive=True))
            except psutil.Error:
                continue
        for proc in procs:
            try:
                total += proc.memory_full_info().pss if self.pss else proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(0.5)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def single_process(files: list[str], out: Path) -> tuple[int, int]:
    spec = parse_spec(SPEC)
    out.mkdir(parents=True)
    rows_in = rows_out = 0
    for index, path in enumerate(files):
        writer = None
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
            table = pa.Table.from_batches([batch])
            rows_in += table.num_rows
            for step in spec.steps:
                table = apply_step(step, table)
            rows_out += table.num_rows
            if writer is None:
                writer = pq.ParquetWriter(out / f"part-{index:03d}.parquet", table.schema, compression="zstd")
            writer.write_table(table)
        if writer is not None:
            writer.close()
    return rows_in, rows_out


def _child(files: list[str], out: Path) -> Any:
    import subprocess

    code = (
        "import json, resource, sys, time; sys.path.insert(0, sys.argv[1]);"
        "from pathlib import Path; from preprocessing_throughput import single_process;"
        "t = time.perf_counter(); rows = single_process(json.loads(sys.argv[2]), Path(sys.argv[3]));"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'rows': rows,"
        " 'peak_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))"
    )
    here = str(Path(__file__).resolve().parent)
    args = [sys.executable, "-c", code, here, json.dumps(files), str(out)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def single_process_child(files: list[str], out: Path) -> dict[str, Any]:
    """The baseline in a fresh process, so its memory and the driver's are measured apart."""
    proc = _child(files, out)
    stdout, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"single-process baseline failed with code {proc.returncode}")
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def parallel_ceiling(files: list[str], work: Path) -> float:
    """How much faster two plain processes are than one on this machine right now (same work, split).

    The shared 2-vCPU machine rarely gives two full cores; this is the most any 2-way parallel pipeline
    could reach against the single-process baseline at the time of the run.
    """
    one = single_process_child(files, work / "ceiling-one")["seconds"]
    procs = [_child(files[i::2], work / f"ceiling-two-{i}") for i in range(2)]
    # Each child times its own work (interpreter start-up excluded, as for the one-process run).
    two = max(json.loads(proc.communicate()[0].strip().splitlines()[-1])["seconds"] for proc in procs)
    return float(one / two)


def _hand_written_fn(batch: pa.Table) -> pa.Table:
    from mlk8s.preprocessing.transforms import clean_text, html_to_text, non_empty_text, text_features

    table = text_features(clean_text(html_to_text(batch)))
    return table.filter(non_empty_text(table))


def hand_written(files: list[str], out: Path) -> int:
    import ray.data

    ds = ray.data.read_parquet(files).map_batches(_hand_written_fn, batch_format="pyarrow")
    ds.write_parquet(str(out), compression="zstd")
    return sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("*.parquet"))


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - started, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--data", default="/tmp/mlk8s-bench-docs")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant over the whole dataset")
    args = parser.parse_args()

    info = generate(Path(args.data), args.rows, args.files, seed=11)
    files = sorted(str(p) for p in Path(args.data).glob("*.parquet"))
    work = Path(tempfile.mkdtemp(prefix="mlk8s-bench-"))
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    import ray
    import ray.data

    ray_temp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's session logs: removed at the end
    cluster = LocalRayCluster(ray_temp, head_cpus=args.cpus)
    try:
        cluster.start()
        cluster.enable_auth_in_this_process()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        spec, source = parse_spec(SPEC), open_input(args.data)
        # Warm-up: start and import in Ray's worker processes once, outside the timed runs.
        small = open_input(files[0])
        run_pipeline(spec, small, str(work / "warm-ours"))
        hand_written(files[:1], work / "warm-hand")

        ceiling = parallel_ceiling(files[:4], work)
        roots = [os.getpid(), *(record.pid for record in cluster.records())]
        idle_cluster = PeakMemory(roots, pss=True)._sample()  # Ray's fixed footprint, workers already started
        times = {"single": 0.0, "ours": 0.0, "hand": 0.0}
        commit_s = 0.0  # ours: the Delta commit (one log entry after every part is written)
        rows = {"in": 0, "single": 0, "ours": 0, "hand": 0}
        single_peak = 0
        # The machine is shared: load comes and goes within a minute. Each round runs every variant over the
        # whole dataset (one run per variant, as a pod would), in ABC order, then CBA, ... so a load change
        # hits all three about alike. Whole-dataset runs: a run's fixed costs (starting Ray Data's workers,
        # about 1-2 s here) count once per dataset, as in production, not once per slice.
        for index in range(args.rounds):
            order = ["single", "ours", "hand"] if index % 2 == 0 else ["hand", "ours", "single"]
            for name in order:
                target = work / f"{name}-{index}"
                if name == "single":
                    single = single_process_child(files, target)
                    times["single"] += single["seconds"]
                    rows["in"] += single["rows"][0]
                    rows["single"] += single["rows"][1]
                    single_peak = max(single_peak, single["peak_rss"])
                elif name == "ours":
                    seconds, result = timed(run_pipeline, spec, source, str(target))
                    times["ours"] += seconds
                    rows["ours"] += result["output_rows"]
                    commit_s += result["commit_s"]
                else:
                    seconds, hand_rows = timed(hand_written, files, target)
                    times["hand"] += seconds
                    rows["hand"] += hand_rows
                shutil.rmtree(target, ignore_errors=True)
        # Memory: one more run of ours, untimed, with the samplers on.
        with (
            PeakMemory(roots, pss=True) as mem,
            PeakMemory([os.getpid()], pss=False, children=False) as driver,
        ):
            run_pipeline(spec, replace(source, files=tuple(files[: len(files) // 2])), str(work / "memory"))
        cluster_peak, driver_peak = mem.peak, driver.peak
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(ray_temp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    if not rows["single"] == rows["ours"] == rows["hand"]:
        print(json.dumps({"error": "row counts differ", **rows}))
        return 1
    rows_in, ours_rows = rows["in"], rows["ours"]  # over all rounds
    single_s, ours_s, hand_s = times["single"], times["ours"], times["hand"]
    vs_single = single_s / ours_s
    vs_hand = hand_s / ours_s
    report = {
        "figure": "preprocessing throughput (html_to_text, clean_text, text_features, non_empty_text)",
        "rows": rows_in // args.rounds,
        "output_rows": ours_rows // args.rounds,
        "rounds": args.rounds,
        "ray_cpus": args.cpus,
        "dataset_bytes_on_disk": info["bytes_on_disk"],
        "dataset_uncompressed_mb": round(info["bytes_uncompressed"] / MB),
        "single_process_s": round(single_s / args.rounds, 2),
        "single_process_rows_per_s": round(rows_in / single_s),
        "hand_written_ray_data_s": round(hand_s / args.rounds, 2),
        "hand_written_ray_data_rows_per_s": round(rows_in / hand_s),
        "ours_s": round(ours_s / args.rounds, 2),
        "ours_rows_per_s": round(rows_in / ours_s),
        "ours_commit_s": round(commit_s / args.rounds, 3),
        "ours_commit_share": round(commit_s / ours_s, 4),
        "ratio_vs_single_process": round(vs_single, 3),
        "two_process_ceiling_vs_single": round(ceiling, 3),
        "ours_share_of_ceiling": round(vs_single / ceiling, 3),
        "target_share_of_ceiling": TARGET_SHARE_OF_CEILING,
        "target_vs_single_process": TARGET_VS_SINGLE,
        "ratio_vs_hand_written_ray_data": round(vs_hand, 3),
        "target_vs_hand_written_ray_data": TARGET_VS_HAND,
        "peak_memory_mb": {
            "single_process_rss": round(single_peak / MB),
            "ours_driver_rss": round(driver_peak / MB),
            "ours_cluster_pss_incl_driver": round(cluster_peak / MB),
            "ours_cluster_pss_idle_before_run": round(idle_cluster / MB),
        },
        "embeddings": "excluded: all-MiniLM-L6-v2 on CPU runs at a few hundred rows/s (preprocessing_embeddings.py)",
        "met": vs_single >= TARGET_VS_SINGLE
        and vs_hand >= TARGET_VS_HAND
        and vs_single / ceiling >= TARGET_SHARE_OF_CEILING,
    }
    print(json.dumps(report))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
