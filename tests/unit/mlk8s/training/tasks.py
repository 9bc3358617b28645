"""Tasks used by the tests through ``--task tests.unit.mlk8s.training.tasks:...``, as a user's own plug-in would be."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlk8s.training import TrainingTask
from mlk8s.training.example import ClassifierTask
from mlk8s.training.signals import StopSignal

if TYPE_CHECKING:
    import torch


class LinearRegressionTask(TrainingTask):
    """A user task written from scratch against the documented base class."""

    options = ("rows",)

    def setup(self) -> None:
        import torch

        rows = self.context.int_option("rows", 64, minimum=1)
        gen = torch.Generator().manual_seed(self.context.seed)
        self.x = torch.randn(rows, 3, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1

    def train_size(self) -> int:
        return len(self.x)

    def get_batch(self, indices: torch.Tensor) -> Any:
        return self.x[indices], self.y[indices]

    def build_model(self) -> torch.nn.Module:
        import torch

        return torch.nn.Linear(3, 1)

    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        import torch

        x, y = batch
        return torch.nn.functional.mse_loss(model(x).squeeze(1), y)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        import torch

        return {"mse": torch.nn.functional.mse_loss(model(self.x).squeeze(1), self.y).item()}


class StopAtStepTask(ClassifierTask):
    """The built-in task, but it raises the SIGTERM flag at a chosen step (tests set the class attributes)."""

    stop: StopSignal | None = None
    stop_at_step: int = -1
    steps_seen = 0

    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        type(self).steps_seen += 1
        if type(self).steps_seen == self.stop_at_step and self.stop is not None:
            self.stop.request()
        return super().training_step(model, batch)


class NotATask:
    pass


class SupersededTask(ClassifierTask):
    """At a chosen step, a newer process claims the checkpoint store: this one becomes a zombie."""

    checkpoint_uri = ""
    claim_at_step = -1
    steps_seen = 0

    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        from mlk8s.checkpoint import CheckpointStore

        type(self).steps_seen += 1
        if type(self).steps_seen == self.claim_at_step:
            CheckpointStore(self.checkpoint_uri).claim_generation()
        return super().training_step(model, batch)


class NaNAtStepTask(ClassifierTask):
    """The built-in task, but from a chosen step on the loss is NaN (as a diverging run's would be)."""

    nan_from_step = -1
    steps_seen = 0

    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        type(self).steps_seen += 1
        loss = super().training_step(model, batch)
        if type(self).steps_seen >= self.nan_from_step > 0:
            return loss * float("nan")
        return loss


class ResizableTask(LinearRegressionTask):
    """A user task whose data size changes between launches (its upstream re-ran); no fingerprint of its own."""

    options = ()
    rows = 32

    def setup(self) -> None:
        import torch

        gen = torch.Generator().manual_seed(self.context.seed)
        self.x = torch.randn(type(self).rows, 3, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
