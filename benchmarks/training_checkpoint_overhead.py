"""Checkpoint overhead: training wall time with checkpoints at the default interval vs with none.

Both variants run the built-in example task with default flags (the default checkpoint interval: every epoch
and every 500 steps) but ``EPOCHS`` epochs, so a run lasts seconds rather than the default 5 epochs' ~1.7 s, in
which machine noise (+-5% per run here) is larger than the 1% being measured. They alternate, ``PAIRS``
times; the gate is the median of the paired ratios (each pair ran back to back, so a load change hits both
alike); the best-of-N ratio (each variant's fastest run) and the process CPU-time ratio (step thread plus writer thread:
the overhead if no spare core were free for the writer) are reported beside it, and so is the overhead the
trainer attributes to checkpointing inside each run (step-thread seconds spent snapshotting or waiting for the
writer, and gathering the state to snapshot; plus the writer thread's CPU seconds for an upper bound), which a
noisy neighbour cannot skew. ``overhead_standard_error`` says how finely the pairs resolve the gated figure.
Also reported: the step thread's blocked time per checkpoint, bytes written per checkpoint and the writer's MB/s.
Target: at most 1% slower. Prints one JSON object; exits 1 if the target is missed. The machine may be shared:
the figures are only as quiet as it is.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

TARGET_OVERHEAD = 0.01
PAIRS = 7
EPOCHS = 20


def run_once(root: Path, name: str, checkpoints: bool) -> tuple[float, float, float, float, dict[str, float]]:
    from mlk8s.training.config import TrainConfig
    from mlk8s.training.example import ClassifierTask
    from mlk8s.training.trainer import Trainer

    cfg = TrainConfig(checkpoint_uri=str(root / name / "ckpt"), output_uri=str(root / name / "out"), epochs=EPOCHS)
    if not checkpoints:
        cfg = replace(cfg, checkpoint_every_steps=0, checkpoint_every_epochs=0, heartbeat_seconds=1e9)
    trainer = Trainer(cfg, ClassifierTask)
    trainer.prepare()
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = trainer.run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert outcome.exit_code == 0, outcome
    ckpt = trainer.checkpointer
    assert ckpt is not None
    direct = ckpt.step_thread_seconds / trainer.loop_seconds
    upper = (ckpt.step_thread_seconds + ckpt.writer_cpu_seconds) / trainer.loop_seconds
    commits = max(ckpt.committed, 1)
    stats = {
        "committed": ckpt.committed,
        "blocked_per_checkpoint_s": ckpt.step_thread_seconds / commits,
        "bytes_per_checkpoint": ckpt.bytes_written / commits,
        "writer_mb_per_s": ckpt.bytes_written / 1e6 / max(sum(ckpt.commit_seconds), 1e-9),
    }
    return elapsed, cpu, direct, upper, stats


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    from mlk8s.training.config import TrainConfig

    defaults = TrainConfig(checkpoint_uri="", output_uri="")
    with_s: list[float] = []
    without_s: list[float] = []
    with_cpu: list[float] = []
    without_cpu: list[float] = []
    stats: list[dict[str, float]] = []
    direct: list[float] = []
    upper: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        root = Path(tmp)
        run_once(root, "warmup", True)
        for i in range(PAIRS):
            order = (True, False) if i % 2 == 0 else (False, True)
            for checkpoints in order:
                elapsed, cpu, step_share, total_share, run_stats = run_once(root, f"{i}-{checkpoints}", checkpoints)
                (with_s if checkpoints else without_s).append(elapsed)
                (with_cpu if checkpoints else without_cpu).append(cpu)
                if checkpoints:
                    direct.append(step_share)
                    upper.append(total_share)
                    stats.append(run_stats)
        kept = len(list((root / "0-True" / "ckpt").glob("ckpt-*")))
    ratios = [a / b for a, b in zip(with_s, without_s)]
    overhead = statistics.median(ratios) - 1.0
    report = {
        "figure": "training checkpoint overhead",
        "measured_with_checkpoints_s": min(with_s),
        "baseline_without_checkpoints_s": min(without_s),
        "ratio": min(with_s) / min(without_s),
        "rule": "median of paired ratios (with / without), pairs run back to back in alternating order",
        "overhead": overhead,
        "overhead_best_of_n": min(with_s) / min(without_s) - 1.0,
        "overhead_process_cpu": statistics.median(with_cpu) / statistics.median(without_cpu) - 1.0,
        "attributed_step_thread_share": statistics.median(direct),
        "attributed_upper_bound_share": statistics.median(upper),
        "paired_ratios": ratios,
        # How finely this machine can resolve the figure: the median's standard error (1.2533 sd / sqrt(n) for a
        # normal spread). When it is larger than the target, a pass or a miss here says little either way.
        "overhead_standard_error": 1.2533 * statistics.stdev(ratios) / len(ratios) ** 0.5,
        "target_overhead_at_most": TARGET_OVERHEAD,
        "checkpoint_every_steps": defaults.checkpoint_every_steps,
        "checkpoint_every_epochs": defaults.checkpoint_every_epochs,
        "checkpoints_committed_per_run": stats[-1]["committed"],
        "blocked_per_checkpoint_s_median": statistics.median(s["blocked_per_checkpoint_s"] for s in stats),
        "bytes_written_per_checkpoint": stats[-1]["bytes_per_checkpoint"],
        "writer_mb_per_s_median": statistics.median(s["writer_mb_per_s"] for s in stats),
        "checkpoints_kept": kept,
        "epochs": EPOCHS,
        "ok": overhead <= TARGET_OVERHEAD,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
