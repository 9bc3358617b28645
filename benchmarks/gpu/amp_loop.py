"""Mixed-precision training speed: our trainer, configured by the flags of ``python -m mlk8s.training ... --amp``,
against a hand-written torch AMP loop, alternating in one process.

Both sides train the built-in task (mlk8s.training.example: the digits MLP, sized by its ``hidden`` and ``layers``
options) on the same data, with the same model, batch size, optimizer (AdamW) and LR schedule, in the trainer's
deterministic mode (process-wide once the trainer has run). AMP as the trainer does it (mlk8s.training.preparation):
float16 autocast with a GradScaler on cuda, bfloat16 autocast without a scaler on cpu. The hand-written loop writes
no checkpoints, no heartbeats and no logs; ours runs with step and epoch checkpoints off. Ours is the trainer's own
step-loop clock (``Trainer.loop_seconds``, which ends on a device sync); the hand-written loop synchronises the
device before reading its clock.

The gate is best-of-N (each side's fastest run, the usual estimator of uncontended speed); the median of the
paired ratios is reported beside it. Used by benchmarks/gpu/checks.py; importable so a CPU test can run it tiny.
"""

from __future__ import annotations

import gc
import math
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TARGET_RATIO = 0.95
RULE = "ratio = best-of-N ours samples/s / best-of-N hand-written samples/s (each side's fastest run)"


@dataclass(frozen=True)
class Size:
    """How the comparison is sized: the device, the built-in task's MLP, the batch, the epochs and the pairs."""

    device: str
    hidden: int
    layers: int
    batch_size: int
    epochs: int
    pairs: int = 5
    warmup: bool = True

    @property
    def parameters(self) -> int:
        """Parameters of the built-in task's MLP on the digits (64 features, 10 classes)."""
        features, classes = 64, 10
        if self.layers == 0:
            return features * classes + classes
        hidden = self.hidden
        return features * hidden + hidden + (self.layers - 1) * (hidden * hidden + hidden) + hidden * classes + classes


#: On a GPU: ~200M parameters (four 8192-wide layers; ~1.2 TFLOP a step of 1024), so the GPU, not Python, is the
#: cost. The digits with shifts are 7,190 training rows: 8 steps an epoch, 1,000 steps a run (estimated 5-10 s on an
#: H100-class GPU), long enough that one-time costs inside our loop (the pinned snapshot image for an emergency
#: checkpoint, allocated after the first step) weigh as little as they would in a real run. Three pairs plus the
#: warm-ups fit the check's timeout.
GPU_SIZE = Size("cuda", hidden=8192, layers=4, batch_size=1024, epochs=125, pairs=3)


@dataclass(frozen=True)
class Run:
    samples: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else math.nan


def trainer_argv(root: Path, size: Size) -> list[str]:
    """The ``python -m mlk8s.training`` flags of our side (checkpoints off, AMP on)."""
    return [
        "--checkpoint-uri",
        str(root / "ckpt"),
        "--output-uri",
        str(root / "out"),
        "--amp",
        "--device",
        size.device,
        "--batch-size",
        str(size.batch_size),
        "--epochs",
        str(size.epochs),
        "--task-option",
        f"hidden={size.hidden}",
        "--task-option",
        f"layers={size.layers}",
        "--checkpoint-every-steps",
        "0",
        "--checkpoint-every-epochs",
        "0",
    ]


def ours(root: Path, size: Size) -> Run:
    """Our trainer, built from the CLI's flags as ``python -m mlk8s.training`` builds it, in this process."""
    from mlk8s.training.config import parse_config
    from mlk8s.training.task import load_task_class
    from mlk8s.training.trainer import Trainer

    cfg = parse_config(trainer_argv(root, size))
    trainer = Trainer(cfg, load_task_class(cfg.task))
    trainer.prepare()
    outcome = trainer.run()
    if outcome.exit_code != 0:
        raise RuntimeError(f"our trainer exited {outcome.exit_code}: {outcome.result}")
    return Run(trainer.loop_samples, trainer.loop_seconds)


def hand_written(root: Path, size: Size) -> Run:
    """What a user would write without us: the same settings, plain torch AMP, no checkpoints, no logging."""
    import torch

    from mlk8s.training.config import parse_config
    from mlk8s.training.determinism import make_deterministic, seed_everything
    from mlk8s.training.example import ClassifierTask
    from mlk8s.training.task import TaskContext

    cfg = parse_config(trainer_argv(root, size))
    device = torch.device(size.device)
    make_deterministic(cfg.threads, device)
    task = ClassifierTask(TaskContext(None, cfg.seed, cfg.lr, cfg.batch_size, cfg.epochs, device, cfg.task_options))
    task.setup()
    x, y = task.x, task.y
    assert x is not None and y is not None
    n, bs = len(x), cfg.batch_size
    seed_everything(cfg.seed)
    model = task.build_model().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, -(-n // bs) * cfg.epochs))
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if cuda else None
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    samples = 0
    _sync(device)
    started = time.perf_counter()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype):
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            scheduler.step()
            samples += len(idx)
    _sync(device)
    return Run(samples, time.perf_counter() - started)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device: str) -> None:
    """Free the previous run's model and optimizer before the next one allocates (GPU memory, pinned images)."""
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def compare(size: Size, root: Path | None = None) -> dict[str, Any]:
    """Alternate ours and the hand-written loop ``size.pairs`` times (after one unmeasured warm-up of each)."""
    variants = {"ours": ours, "hand_written": hand_written}
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-amp-", dir=root) as tmp:

        def once(name: str, label: str) -> Run:
            where = Path(tmp) / label
            try:
                return variants[name](where, size)
            finally:
                shutil.rmtree(where, ignore_errors=True)  # the published model of a GPU-sized run is ~800 MB
                _release(size.device)

        if size.warmup:
            for name in variants:
                once(name, f"warmup-{name}")
        for i in range(size.pairs):
            for name in ("ours", "hand_written") if i % 2 == 0 else ("hand_written", "ours"):
                runs[name].append(once(name, f"{i}-{name}"))
    ours_sps = [r.samples_per_s for r in runs["ours"]]
    hand_sps = [r.samples_per_s for r in runs["hand_written"]]
    ratio = max(ours_sps) / max(hand_sps)
    samples = {r.samples for rs in runs.values() for r in rs}
    per_epoch = runs["ours"][0].samples // max(1, size.epochs)
    steps = -(-per_epoch // size.batch_size) * size.epochs
    best_hand = max(hand_sps)
    return {
        "figure": "training samples/s with AMP: our trainer (--amp, checkpoints off) vs a hand-written torch AMP loop",
        "size": asdict(size) | {"parameters": size.parameters},
        "amp": "float16 autocast + GradScaler" if size.device == "cuda" else "bfloat16 autocast, no scaler",
        "samples_per_run": runs["ours"][0].samples,
        "steps_per_run": steps,
        "same_samples": len(samples) == 1,
        "measured_ours_samples_per_s": max(ours_sps),
        "baseline_hand_written_samples_per_s": best_hand,
        "hand_written_ms_per_step": 1000.0 * size.batch_size / best_hand,
        # 6 FLOP per parameter per sample (forward and backward of the linear layers): how busy the GPU is.
        "hand_written_model_tflops": 6.0 * size.parameters * best_hand / 1e12,
        "ratio": ratio,
        "ratio_median_of_pairs": statistics.median(a / b for a, b in zip(ours_sps, hand_sps, strict=True)),
        "ours_samples_per_s_runs": ours_sps,
        "hand_written_samples_per_s_runs": hand_sps,
        "rule": RULE,
        "target_ratio_at_least": TARGET_RATIO,
        "ok": ratio >= TARGET_RATIO and len(samples) == 1,
    }
