"""A bounded record of a training run that survives relaunches: the loss curve, the checkpoints, the resumes.

It travels inside every checkpoint and comes back in the result JSON under ``history``, so a page can plot the
loss across relaunches. Shape (JSON)::

    {
      "loss_every_steps": 4,                 # one loss point per this many steps (doubles as the run grows)
      "loss": [{"step": 4, "epoch": 0, "loss": 2.28}, ...],          # mean loss of the steps since the point before
      "checkpoints": [{"step": 500, "epoch": 2, "time": 1767225600.0, "uri": "s3://..."}, ...],
      "checkpoints_total": 12,
      "resumes": [{"from_step": 500, "work_lost_steps": 3, "time": 1767225700.0}, ...],
      "resumes_total": 1
    }

The loss curve keeps at most :data:`MAX_LOSS_POINTS` points for any run length: when it would grow past that,
neighbouring points merge pairwise (a weighted mean) and the interval doubles. Points depend only on the steps,
and the loss of the unfinished interval is checkpointed too, so a resumed run's curve equals an uninterrupted
run's. Checkpoints and resumes keep the newest :data:`MAX_EVENTS` entries each, plus their totals. Loss values
are kept as device tensors until a sync point (a checkpoint, the end) converts them in one go.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MAX_LOSS_POINTS = 256
MAX_EVENTS = 100


@dataclass
class _Point:
    step: int
    epoch: int
    loss: float
    steps: int  # how many steps the mean covers (for merging)


class History:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.every = 1
        self._points: list[_Point] = []
        self._pending: list[tuple[int, int, torch.Tensor, int]] = []
        self._window: torch.Tensor | None = None
        self._window_steps = 0
        self._checkpoints: list[dict[str, Any]] = []
        self._checkpoints_total = 0
        self._resumes: list[dict[str, Any]] = []
        self._resumes_total = 0

    def on_step(self, step: int, epoch: int, loss: torch.Tensor) -> None:
        """Add one step's loss (a detached scalar tensor); ``step`` counts steps done, this one included."""
        value = loss.float()
        self._window = value.clone() if self._window is None else self._window.add_(value)
        self._window_steps += 1
        if step % self.every == 0:
            self._pending.append((step, epoch, self._window, self._window_steps))
            self._window, self._window_steps = None, 0

    def flush(self) -> None:
        """Turn pending loss tensors into numbers (one device sync) and keep the curve within bounds."""
        import torch

        if self._pending:
            values = torch.stack([t for _, _, t, _ in self._pending]).tolist()
            for (step, epoch, _, steps), total in zip(self._pending, values, strict=True):
                self._points.append(_Point(step, epoch, total / steps, steps))
            self._pending.clear()
        while len(self._points) > MAX_LOSS_POINTS:
            merged = []
            for i in range(0, len(self._points) - 1, 2):
                a, b = self._points[i], self._points[i + 1]
                steps = a.steps + b.steps
                merged.append(_Point(b.step, b.epoch, (a.loss * a.steps + b.loss * b.steps) / steps, steps))
            if len(self._points) % 2:
                merged.append(self._points[-1])
            self._points = merged
            self.every *= 2

    def checkpoint_committed(self, step: int, epoch: int, uri: str, at: float) -> None:
        with self._lock:
            self._checkpoints = [*self._checkpoints, {"step": step, "epoch": epoch, "time": at, "uri": uri}][
                -MAX_EVENTS:
            ]
            self._checkpoints_total += 1

    def resumed(self, from_step: int, work_lost_steps: int, at: float) -> None:
        with self._lock:
            entry = {"from_step": from_step, "work_lost_steps": work_lost_steps, "time": at}
            self._resumes = [*self._resumes, entry][-MAX_EVENTS:]
            self._resumes_total += 1

    def to_json(self) -> dict[str, Any]:
        """The public shape (see the module docstring); flushes first."""
        self.flush()
        with self._lock:
            return {
                "loss_every_steps": self.every,
                "loss": [{"step": p.step, "epoch": p.epoch, "loss": p.loss} for p in self._points],
                "checkpoints": list(self._checkpoints),
                "checkpoints_total": self._checkpoints_total,
                "resumes": list(self._resumes),
                "resumes_total": self._resumes_total,
            }

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores: the public shape plus the exact point weights and the open interval."""
        body = self.to_json()
        body["loss_steps"] = [p.steps for p in self._points]
        body["window"] = None if self._window is None else [float(self._window.item()), self._window_steps]
        return body

    @classmethod
    def from_state(cls, body: dict[str, Any], device: Any) -> History:
        import torch

        history = cls()
        history.every = int(body["loss_every_steps"])
        history._points = [
            _Point(int(p["step"]), int(p["epoch"]), float(p["loss"]), int(n))
            for p, n in zip(body["loss"], body["loss_steps"], strict=True)
        ]
        if body.get("window") is not None:
            total, steps = body["window"]
            history._window = torch.tensor(float(total), dtype=torch.float32, device=device)
            history._window_steps = int(steps)
        history._checkpoints = list(body["checkpoints"])
        history._checkpoints_total = int(body["checkpoints_total"])
        history._resumes = list(body["resumes"])
        history._resumes_total = int(body["resumes_total"])
        return history
