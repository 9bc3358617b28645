"""The progress lines of the task log, readable for any run length, and the finiteness check of the loss.

A line (``mlk8s: progress epoch=E/T step=S/T loss=.. samples_per_s=.. since_checkpoint_s=..``) is written at
the end of the first and of the last epoch, every ``--log-every-seconds`` (30 by default), and every
``--log-every-steps`` steps when that is set: a 1000-epoch run logs by time, not a line per epoch. The loss of a
line is the mean since the previous line, summed on the device; reading it is a sync point, so that is also
where a NaN or infinite loss is caught (and before every checkpoint, through :meth:`check_finite`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlk8s.training.numerics import NonFiniteError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("mlk8s.training")


class ProgressLog:
    def __init__(
        self,
        *,
        epochs: int,
        total_steps: int,
        every_steps: int,
        every_seconds: float,
        since_checkpoint: Callable[[], float],
    ) -> None:
        self.epochs = epochs
        self.total_steps = total_steps
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self._since_checkpoint = since_checkpoint
        self._loss: torch.Tensor | None = None
        self._steps = 0
        self._samples = 0
        #: The last step whose loss is known to be finite.
        self._checked_through = 0
        self._started = self._last_line = time.perf_counter()

    def after_step(self, step: int, epochs_done: int, epoch_end: bool, loss: torch.Tensor, samples: int) -> None:
        """Account one step (``step`` counts it) and write a line when one is due."""
        value = loss.float()
        self._loss = value.clone() if self._loss is None else self._loss.add_(value)
        self._steps += 1
        self._samples += samples
        now = time.perf_counter()
        due = (
            (self.every_steps and step % self.every_steps == 0)
            or (epoch_end and epochs_done in (1, self.epochs))
            or now - self._last_line >= self.every_seconds
        )
        if due:
            mean = self.check_finite(step)
            log.info(
                "mlk8s: progress epoch=%d/%d step=%d/%d loss=%.4f samples_per_s=%.0f since_checkpoint_s=%.1f",
                epochs_done,
                self.epochs,
                step,
                self.total_steps,
                mean,
                self._samples / max(now - self._last_line, 1e-9),
                self._since_checkpoint(),
            )
            self._steps = self._samples = 0
            self._loss = None
            self._last_line = now

    def check_finite(self, step: int) -> float:
        """The mean loss of the steps since the last line; raises :class:`NonFiniteError` if any was NaN or inf."""
        if self._loss is None or not self._steps:
            return math.nan
        mean = float(self._loss.item()) / self._steps
        if not math.isfinite(mean):
            raise NonFiniteError(
                f"the loss became non-finite ({mean}) between steps {self._checked_through + 1} and {step}; nothing "
                "trained since is committed. Lower --lr, or check the data and the model"
            )
        self._checked_through = step
        return mean
