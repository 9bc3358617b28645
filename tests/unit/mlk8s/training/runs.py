"""Running the trainer in-process the way the tests need it: small configs, interruptions at a chosen step."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mlk8s.training.config import TrainConfig
from mlk8s.training.example import ClassifierTask
from mlk8s.training.signals import StopSignal
from mlk8s.training.trainer import Outcome, Trainer
from tests.unit.mlk8s.training.tasks import StopAtStepTask

# 1437 training rows / 128 = 12 steps per epoch, 3 epochs: 36 steps in well under a second.
SMALL = {"hidden": "24", "layers": "1", "shifts": "0"}


def config(tmp: Path, **overrides: object) -> TrainConfig:
    base = TrainConfig(
        checkpoint_uri=str(tmp / "ckpt"),
        output_uri=str(tmp / "out"),
        task_options=dict(SMALL),
        epochs=3,
        seed=5,
        batch_size=128,
        checkpoint_every_steps=5,
        heartbeat_seconds=0,
        log_every_steps=0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def train(cfg: TrainConfig, task: type = ClassifierTask, stop: StopSignal | None = None) -> Outcome:
    trainer = Trainer(cfg, task, stop)
    trainer.prepare()
    return trainer.run()


def weights(cfg: TrainConfig) -> str:
    return hashlib.sha256((Path(cfg.output_uri) / "model.safetensors").read_bytes()).hexdigest()


def interrupt_at(cfg: TrainConfig, step: int) -> Outcome:
    """Run ``cfg`` with the built-in task (through StopAtStepTask) and a SIGTERM flag raised at ``step``."""
    stop = StopSignal()
    StopAtStepTask.stop, StopAtStepTask.stop_at_step, StopAtStepTask.steps_seen = stop, step, 0
    cfg = replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask")
    return train(cfg, StopAtStepTask, stop)


def resumed_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    found = []
    for record in caplog.records:
        match = re.fullmatch(r"mlk8s: resumed from step=(\d+) work_lost_steps=(\d+)", record.getMessage())
        if match:
            found.append((int(match.group(1)), int(match.group(2))))
    return found
