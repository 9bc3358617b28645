"""Embedding throughput: the default document pipeline (cleaning, features, all-MiniLM-L6-v2 embeddings)
on a local Ray cluster vs the same steps in one process (run_reference), same run, same documents.

On CPU the model dominates; the single process lets torch use every core, while each Ray actor gets the
CPUs it reserved (1 by default). No target: the figure says what CPU embedding costs here (and why the
throughput benchmark leaves embeddings out). On a GPU node the embed step reserves one GPU per actor.

    .venv/bin/python benchmarks/preprocessing_embeddings.py [--rows 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mlk8s.local_ray import LocalRayCluster
from mlk8s.preprocessing.reference import run_reference
from mlk8s.preprocessing.run import run_pipeline
from mlk8s.preprocessing.samples import write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import load_spec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    import logging

    import ray
    import ray.data

    work = Path(tempfile.mkdtemp(prefix="mlk8s-emb-"))
    docs = write_documents(work / "docs.jsonl", rows=args.rows)
    spec, source = load_spec(None), open_input(str(docs))

    started = time.perf_counter()
    reference = run_reference(spec, source)
    single_s = time.perf_counter() - started

    cluster = LocalRayCluster(tempfile.mkdtemp(prefix="rl-", dir="/tmp"), head_cpus=args.cpus)
    try:
        cluster.start()
        cluster.enable_auth_in_this_process()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        started = time.perf_counter()
        result = run_pipeline(spec, source, str(work / "out"))
        ours_s = time.perf_counter() - started
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    if result["output_rows"] != reference.num_rows:
        print(json.dumps({"error": "row counts differ", "ours": result["output_rows"], "single": reference.num_rows}))
        return 1
    print(
        json.dumps(
            {
                "figure": "embedding throughput, default pipeline (all-MiniLM-L6-v2, CPU)",
                "rows": args.rows,
                "embedded_rows": reference.num_rows,
                "ray_cpus": args.cpus,
                "single_process_s": round(single_s, 2),
                "single_process_rows_per_s": round(args.rows / single_s, 1),
                "ours_s_including_model_load": round(ours_s, 2),
                "ours_rows_per_s": round(args.rows / ours_s, 1),
                "ratio_vs_single_process": round(single_s / ours_s, 3),
                "target": None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
