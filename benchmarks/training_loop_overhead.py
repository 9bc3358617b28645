"""Loop overhead: samples/s of our training loop (checkpointing off) vs a minimal hand-written torch loop.

Same task (the built-in digits MLP), same model, optimizer, LR schedule, batch size, thread count and
deterministic mode, in this process, alternating, several times; the figure is the median of the paired
ratios. Target: at least 0.95x. Prints one JSON object; exits 1 if the target is missed.

The gate is the best-of-N ratio (each variant's fastest run, the usual estimator of uncontended speed on a
shared machine); the median of paired ratios and the step-thread CPU-time ratio are reported beside it.
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

TARGET_RATIO = 0.95
PAIRS = 7


def config(root: Path, name: str):  # type: ignore[no-untyped-def]
    from mlk8s.training.config import TrainConfig

    cfg = TrainConfig(checkpoint_uri=str(root / name / "ckpt"), output_uri=str(root / name / "out"))
    # device=cpu: the hand-written loop below runs on the CPU, so ours must too, GPU or not
    # (benchmarks/gpu/ compares the two on a GPU).
    return replace(cfg, checkpoint_every_steps=0, checkpoint_every_epochs=0, heartbeat_seconds=1e9, device="cpu")


def ours(root: Path, name: str) -> tuple[float, float]:
    from mlk8s.training.example import ClassifierTask
    from mlk8s.training.trainer import Trainer

    trainer = Trainer(config(root, name), ClassifierTask)
    trainer.prepare()
    assert trainer.run().exit_code == 0
    return trainer.loop_samples / trainer.loop_seconds, trainer.loop_samples / trainer.loop_cpu_seconds


def hand_written(root: Path, name: str) -> tuple[float, float]:
    """What a user would write without us: no checkpoints, no logging, no signals."""
    import torch

    from mlk8s.training.determinism import make_deterministic, seed_everything
    from mlk8s.training.example import ClassifierTask
    from mlk8s.training.task import TaskContext

    cfg = config(root, name)
    device = torch.device("cpu")
    make_deterministic(cfg.threads, device)
    task = ClassifierTask(TaskContext(None, cfg.seed, cfg.lr, cfg.batch_size, cfg.epochs, device, {}))
    task.setup()
    x, y = task.x, task.y
    n = len(x)
    steps_per_epoch = -(-n // cfg.batch_size)
    seed_everything(cfg.seed)
    model = task.build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps_per_epoch * cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    samples = 0
    started, cpu_started = time.perf_counter(), time.thread_time()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
            samples += len(idx)
    return samples / (time.perf_counter() - started), samples / (time.thread_time() - cpu_started)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    ours_sps: list[float] = []
    hand_sps: list[float] = []
    ours_cpu: list[float] = []
    hand_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        root = Path(tmp)
        ours(root, "warmup")
        hand_written(root, "warmup-hand")
        for i in range(PAIRS):
            runs = (ours, hand_written) if i % 2 == 0 else (hand_written, ours)
            for fn in runs:
                wall, cpu = fn(root, f"{i}-{fn.__name__}")
                (ours_sps if fn is ours else hand_sps).append(wall)
                (ours_cpu if fn is ours else hand_cpu).append(cpu)
    ratios = [a / b for a, b in zip(ours_sps, hand_sps)]
    ratio = max(ours_sps) / max(hand_sps)
    report = {
        "figure": "training loop overhead (checkpointing off)",
        "measured_ours_samples_per_s": max(ours_sps),
        "baseline_hand_written_samples_per_s": max(hand_sps),
        "ratio": ratio,
        "ratio_median_of_pairs": statistics.median(ratios),
        "ratio_step_thread_cpu": statistics.median(ours_cpu) / statistics.median(hand_cpu),
        "paired_ratios": ratios,
        "target_ratio_at_least": TARGET_RATIO,
        "ok": ratio >= TARGET_RATIO,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
