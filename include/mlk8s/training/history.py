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

The loss curve keeps fewer than :data:`MAX_LOSS_POINTS` points for any run length: when it reaches that,
neighbouring points merge pairwise (a weighted mean) and the interval doubles. Points depend only on the steps,
and the loss of the unfinished interval is checkpointed too, so a resumed run's curve equals an uninterrupted
run's. Checkpoints and resumes keep the newest :data:`MAX_EVENTS` entries each, plus their totals. Loss values
stay device tensors (merged there); only reading the history (a checkpoint, the end) syncs, once.
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
    #: The float32 sum of the losses it covers, kept as a tensor: every merge is the same float32 addition
    #: whether or not the value was ever read, so the curve is independent of when anyone looked at it.
    total: torch.Tensor
    steps: int


class History:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.every = 1
        self._points: list[_Point] = []
        self._window: torch.Tensor | None = None
        self._window_steps = 0
        self._checkpoints: list[dict[str, Any]] = []
        self._checkpoints_total = 0
        #: Checkpoints taken (snapshotted) whose commit on the writer has not landed yet.
        self._pending: list[dict[str, Any]] = []
        self._resumes: list[dict[str, Any]] = []
        self._resumes_total = 0

    def on_step(self, step: int, epoch: int, loss: torch.Tensor) -> None:
        """Add one step's loss (a detached scalar tensor); ``step`` counts steps done, this one included."""
        value = loss.float()
        self._window = value.clone() if self._window is None else self._window.add_(value)
        self._window_steps += 1
        if step % self.every == 0:
            self._points.append(_Point(step, epoch, self._window, self._window_steps))
            self._window, self._window_steps = None, 0
            if len(self._points) >= MAX_LOSS_POINTS:  # an even count: merged points stay on the grid
                self._halve()

    def _halve(self) -> None:
        """Merge neighbouring points pairwise and double the interval (on the device: no sync)."""
        merged = []
        for i in range(0, len(self._points) - 1, 2):
            a, b = self._points[i], self._points[i + 1]
            merged.append(_Point(b.step, b.epoch, a.total + b.total, a.steps + b.steps))
        if len(self._points) % 2:
            merged.append(self._points[-1])
        self._points = merged
        self.every *= 2

    def checkpoint_taken(self, step: int, epoch: int, uri: str, at: float) -> None:
        """A snapshot went to the writer; a checkpoint taken after it records it as in flight."""
        with self._lock:
            self._pending.append({"step": step, "epoch": epoch, "time": at, "uri": uri})

    def checkpoint_committed(self, step: int, epoch: int, uri: str, at: float) -> None:
        with self._lock:
            self._pending = [c for c in self._pending if c["step"] != step]
            self._checkpoints = [*self._checkpoints, {"step": step, "epoch": epoch, "time": at, "uri": uri}][
                -MAX_EVENTS:
            ]
            self._checkpoints_total += 1

    def resumed(self, from_step: int, work_lost_steps: int, at: float) -> None:
        with self._lock:
            entry = {"from_step": from_step, "work_lost_steps": work_lost_steps, "time": at}
            self._resumes = [*self._resumes, entry][-MAX_EVENTS:]
            self._resumes_total += 1

    def _totals(self) -> list[float]:
        import torch

        return torch.stack([p.total for p in self._points]).tolist() if self._points else []

    def to_json(self) -> dict[str, Any]:
        """The public shape (see the module docstring); reading the losses is one device sync."""
        totals = self._totals()
        with self._lock:
            return {
                "loss_every_steps": self.every,
                "loss": [
                    {"step": p.step, "epoch": p.epoch, "loss": total / p.steps}
                    for p, total in zip(self._points, totals, strict=True)
                ],
                "checkpoints": list(self._checkpoints),
                "checkpoints_total": self._checkpoints_total,
                "resumes": list(self._resumes),
                "resumes_total": self._resumes_total,
            }

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores: the events and the exact loss points (float32 sums and their step counts)
        and the open interval. The public per-point means are left out (they follow from the sums): one float
        formatted per point instead of two, on every checkpoint."""
        totals = self._totals()
        with self._lock:
            return {
                "loss_every_steps": self.every,
                "loss_points": [[p.step, p.epoch, p.steps] for p in self._points],
                "loss_totals": totals,
                "window": None if self._window is None else [float(self._window.item()), self._window_steps],
                "checkpoints": list(self._checkpoints),
                "checkpoints_total": self._checkpoints_total,
                "pending_checkpoints": list(self._pending),
                "resumes": list(self._resumes),
                "resumes_total": self._resumes_total,
            }

    @classmethod
    def from_state(cls, body: dict[str, Any], device: Any) -> History:
        import torch

        history = cls()
        history.every = int(body["loss_every_steps"])
        if "loss_points" in body:
            points = [(int(step), int(epoch), int(n)) for step, epoch, n in body["loss_points"]]
        else:  # written before 2026-12 (the public shape plus "loss_steps")
            points = [
                (int(p["step"]), int(p["epoch"]), int(n)) for p, n in zip(body["loss"], body["loss_steps"], strict=True)
            ]
        history._points = [
            _Point(step, epoch, torch.tensor(float(t), dtype=torch.float32, device=device), n)
            for (step, epoch, n), t in zip(points, body["loss_totals"], strict=True)
        ]
        if body.get("window") is not None:
            total, steps = body["window"]
            history._window = torch.tensor(float(total), dtype=torch.float32, device=device)
            history._window_steps = int(steps)
        # A checkpoint still in flight when this one was snapshotted committed before this one did (the writer
        # commits in order, and a failed commit ends the run): resuming from this one means it landed.
        pending = list(body.get("pending_checkpoints", []))
        history._checkpoints = [*body["checkpoints"], *pending][-MAX_EVENTS:]
        history._checkpoints_total = int(body["checkpoints_total"]) + len(pending)
        history._resumes = list(body["resumes"])
        history._resumes_total = int(body["resumes_total"])
        return history
