"""Progress lines: the first and last epoch always, then by time, so a 1000-epoch run logs a few lines."""

from __future__ import annotations

import logging
import re

import pytest

from mlk8s.training.numerics import NonFiniteError
from mlk8s.training.progress import ProgressLog


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("mlk8s: progress")]


def run(log: ProgressLog, epochs: int, steps_per_epoch: int, loss: float = 1.0) -> None:
    import torch

    for step in range(1, epochs * steps_per_epoch + 1):
        log.after_step(step, step // steps_per_epoch, step % steps_per_epoch == 0, torch.tensor(loss), 4)


def make(epochs: int, spe: int, *, every_steps: int = 0, every_seconds: float = 3600.0) -> ProgressLog:
    return ProgressLog(
        epochs=epochs,
        total_steps=epochs * spe,
        every_steps=every_steps,
        every_seconds=every_seconds,
        since_checkpoint=lambda: 0.0,
    )


def test_a_thousand_epochs_log_the_first_and_the_last(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        run(make(1000, 3), 1000, 3)
    found = lines(caplog)
    assert [re.search(r"epoch=(\d+)/", line).group(1) for line in found] == ["1", "1000"]  # type: ignore[union-attr]
    assert "step=3000/3000 loss=1.0000" in found[-1]


def test_time_and_step_intervals_add_lines(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        run(make(4, 10, every_steps=5), 4, 10)
    assert len(lines(caplog)) == 8
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run(make(3, 4, every_seconds=0.0), 3, 4)
    assert len(lines(caplog)) == 12


def test_a_nan_loss_is_caught_at_the_next_line() -> None:
    with pytest.raises(NonFiniteError, match=r"non-finite \(nan\) between steps 1 and 3"):
        run(make(1, 3), 1, 3, loss=float("nan"))
