"""Embedding throughput: the default document pipeline (cleaning, features, all-MiniLM-L6-v2 embeddings) on a
local Ray cluster vs the same steps in one process (run_reference), same run, same documents.

Both sides run the same embedding code (mlk8s.preprocessing.embedding): the single process with torch's default
threads (every core), the Ray pipeline as the plan sizes it (on CPU one fused worker per node reserving the
node's CPUs, torch threads = those CPUs; on a GPU one actor per GPU, float16). Each side pays what a fresh
process pays once: the single process is a new interpreter per run (imports, model load, the steps), and ours
starts new Ray workers per run (imports and model load once per worker); the Ray cluster's own start is not
counted (a pool is already up when a pipeline runs).

Rule: ``PAIRS`` alternating pairs (single, ours); each side's best run (best-of-N) gives the ratio
single_s / ours_s. Target >= 0.95 on CPU, >= 0.9 on a GPU. Prints one JSON object; exits 1 when it misses.

    .venv/bin/python benchmarks/preprocessing_embeddings.py [--rows 2000] [--pairs 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlk8s.local_ray import LocalRayCluster
from mlk8s.preprocessing.embedding import CPU_MAX_TOKENS, GPU_MAX_TOKENS
from mlk8s.preprocessing.run import run_pipeline
from mlk8s.preprocessing.samples import write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import load_spec

TARGETS = {"cpu": 0.95, "cuda": 0.9}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--device", choices=sorted(TARGETS), default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    if args.device == "cpu":
        # The lone process must not use a GPU either (the CPU figure taken on a GPU machine).
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import ray
    import ray.data
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "--device cuda: no CUDA GPU here (torch.cuda.is_available() is False)"}))
        return 1
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    work = Path(tempfile.mkdtemp(prefix="mlk8s-emb-"))
    docs = write_documents(work / "docs.jsonl", rows=args.rows)
    spec, source = load_spec(None), open_input(str(docs))
    padding = padded_tokens(spec, source, GPU_MAX_TOKENS if args.device == "cuda" else CPU_MAX_TOKENS)

    single, ours, reference_rows, output_rows = [], [], 0, 0
    ray_temp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's session logs: removed at the end
    cluster = LocalRayCluster(ray_temp, head_cpus=args.cpus, head_gpus=gpus)
    try:
        cluster.start()
        cluster.enable_auth_in_this_process()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for pair in range(args.pairs):
            started = time.perf_counter()
            reference_rows = single_process(docs)
            single.append(time.perf_counter() - started)
            started = time.perf_counter()
            output_rows = run_pipeline(spec, source, str(work / f"out-{pair}"))["output_rows"]
            ours.append(time.perf_counter() - started)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(ray_temp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if output_rows != reference_rows:
        print(json.dumps({"error": "row counts differ", "ours": output_rows, "single": reference_rows}))
        return 1
    ratio = min(single) / min(ours)
    target = TARGETS[args.device]
    print(
        json.dumps(
            {
                "figure": f"embedding throughput, default pipeline (all-MiniLM-L6-v2, {args.device})",
                "rule": f"best of {args.pairs} alternating runs per side; ratio = single_s / ours_s",
                "rows": args.rows,
                "embedded_rows": reference_rows,
                "ray_cpus": args.cpus,
                "ray_gpus": gpus,
                "single_process_s": [round(s, 2) for s in single],
                "ours_s_including_model_load": [round(s, 2) for s in ours],
                "single_process_rows_per_s": round(args.rows / min(single), 1),
                "ours_rows_per_s": round(args.rows / min(ours), 1),
                "ratio_vs_single_process": round(ratio, 3),
                "padded_tokens": padding,
                "target": target,
                "ok": ratio >= target,
            }
        )
    )
    return 0 if ratio >= target else 1


def padded_tokens(spec: Any, source: Any, max_tokens: int) -> dict[str, int]:
    """The tokens each side's forward passes compute (rows x each batch's longest row), counted with the
    tokenizer alone: a Ray task embeds its input work unit by unit, the single process all rows at once, and
    fewer rows to sort means more padding. ``*_fixed_cut`` is the same without the early cut where rows get
    shorter (embedding.token_batches' ``min_tokens``). Deterministic, so it shows what timing noise hides."""
    from mlk8s.preprocessing.embedding import load_model, token_batches
    from mlk8s.preprocessing.readers import read_unit
    from mlk8s.preprocessing.stages import apply_step
    from mlk8s.preprocessing.work_units import work_units

    embed = spec.steps[-1]
    tokenizer = load_model("cpu", embed.args.get("max_seq_length", 256), "float32").tokenizer

    def lengths(table: Any) -> list[int]:
        for step in spec.steps[:-1]:
            table = apply_step(step, table)
        texts = [t for t in table.column(embed.args.get("column", "text")).to_pylist() if t]
        return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]]

    def padded(blocks: list[list[int]], min_tokens: int | None) -> int:
        return sum(
            len(batch) * max(block[i] for i in batch)
            for block in blocks
            for batch in token_batches(block, max_tokens, min_tokens=min_tokens)
        )

    units = [lengths(read_unit(source, unit)) for unit in work_units(source)]
    whole = [[n for unit in units for n in unit]]
    return {
        "real": sum(whole[0]),
        "ours": padded(units, None),
        "single": padded(whole, None),
        "ours_fixed_cut": padded(units, 10**9),
        "single_fixed_cut": padded(whole, 10**9),
        "work_units": len(units),
    }


def single_process(docs: Path) -> int:
    """The default pipeline over ``docs`` in a fresh interpreter (run_reference); returns its output rows."""
    code = (
        "import sys; from mlk8s.preprocessing.reference import run_reference;"
        "from mlk8s.preprocessing.sources import open_input; from mlk8s.preprocessing.spec import load_spec;"
        "print(run_reference(load_spec(None), open_input(sys.argv[1])).num_rows)"
    )
    # The environment is this process's: with --device cpu, CUDA_VISIBLE_DEVICES is already empty.
    done = subprocess.run([sys.executable, "-c", code, str(docs)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"single-process baseline failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
