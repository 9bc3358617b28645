"""The plug-in point for a user's own model, data and training step (``--task package.module:ClassName``).

A task owns everything that is about *what* is trained; the loop owns *how* it survives kills: data order,
checkpoints, RNG, signals. Because the loop picks the batch indices (a permutation derived from seed and
epoch), a task only has to turn indices into a batch, and exact mid-epoch resume comes for free.

Minimal task::

    class MyTask(TrainingTask):
        def setup(self) -> None:
            self.x, self.y = load_my_tensors(self.context.data)

        def train_size(self) -> int:
            return len(self.x)

        def get_batch(self, indices):
            return self.x[indices], self.y[indices]

        def build_model(self):
            return torch.nn.Linear(16, 2)

        def training_step(self, model, batch):
            x, y = batch
            return torch.nn.functional.cross_entropy(model(x), y)

Raise :class:`TaskUsageError` from ``setup`` for bad input (missing data, wrong columns): the CLI reports it
before training starts and exits with the usage code.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class TaskUsageError(ValueError):
    """Bad input to a task; ``flag`` names the CLI flag to fix."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class TaskContext:
    """What the CLI tells a task. ``options`` holds every ``--task-option KEY=VALUE``.

    ``data_partition`` and ``data_version`` say which part and version of a Delta table ``data`` to read:
    the version is the one a resumed run must read (recorded in its checkpoint), else ``--data-version``, else
    None for the latest.
    """

    data: str | None
    seed: int
    lr: float
    batch_size: int
    epochs: int
    device: Any  # torch.device; typed loosely so this module imports without torch
    options: dict[str, str] = field(default_factory=dict)
    data_partition: dict[str, str] = field(default_factory=dict)
    data_version: int | None = None
    #: Seconds one object-store call may take (None: ``MLK8S_STORAGE_TIMEOUT_S`` or its default).
    storage_timeout_s: float | None = None

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def int_option(self, key: str, default: int, *, minimum: int = 0) -> int:
        raw = self.options.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise TaskUsageError("--task-option", f"{key}={raw!r} must be an integer, e.g. {key}={default}") from None
        if value < minimum:
            raise TaskUsageError("--task-option", f"{key}={value} must be at least {minimum}")
        return value

    def float_option(self, key: str, default: float) -> float:
        raw = self.options.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise TaskUsageError("--task-option", f"{key}={raw!r} must be a number, e.g. {key}={default}") from None


class TrainingTask:
    """Base class for tasks. Override the methods marked required; the rest have sensible defaults."""

    #: Option keys this task understands; others are rejected before training so typos do not pass silently.
    options: tuple[str, ...] = ()

    def __init__(self, context: TaskContext) -> None:
        self.context = context
        unknown = sorted(set(context.options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise TaskUsageError("--task-option", f"unknown option(s) {', '.join(unknown)}; this task knows: {known}")

    def setup(self) -> None:
        """Load data (onto ``context.device`` if it fits). Must not consume the global RNGs' randomness."""

    def train_size(self) -> int:
        """Required: number of training examples."""
        raise NotImplementedError

    def get_batch(self, indices: torch.Tensor) -> Any:
        """Required: the batch for these example indices (a CPU int64 tensor)."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        """Required: a freshly initialised model (the loop seeds the RNGs first and moves it to the device)."""
        raise NotImplementedError

    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """Required: the scalar loss for one batch; the loop runs backward, the optimizer and the scheduler.

        It must not modify parameters or optimizer state in place: a checkpoint's copy of them may still be
        running while it does (the loop lets it overlap forward and backward, and waits before the update).
        """
        raise NotImplementedError

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        import torch

        return torch.optim.AdamW(model.parameters(), lr=self.context.lr)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """An LR scheduler stepped once per optimizer step, or None."""
        return None

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Metrics for the final model (e.g. held-out accuracy); called in eval mode under no_grad."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Extra JSON-able facts to store beside the final model (class names, feature size...)."""
        return {}

    def data_fingerprint(self) -> dict[str, Any]:
        """What identifies the data this task read (JSON values), recorded in every checkpoint.

        A relaunch whose fingerprint differs is refused (exit 2) instead of resuming on other data. The trainer
        always adds the training-set size; a task reading versioned data should add the version it read
        (``"version"``), which a resume then passes back as ``context.data_version``.
        """
        return {}

    def teardown(self) -> None:
        """Release what ``setup`` took (caches, connections); called once the run is over, whatever its end."""


def load_task_class(dotted: str) -> type[TrainingTask]:
    """Import ``package.module:Class`` (or ``package.module.Class``) as the pipeline spec's dotted paths are
    (``pkgutil.resolve_name``); raises TaskUsageError naming --task."""
    if "." not in dotted and ":" not in dotted:
        raise TaskUsageError("--task", f"{dotted!r} is not a dotted path; use package.module:ClassName")
    try:
        obj = pkgutil.resolve_name(dotted)
    except ImportError as exc:
        raise TaskUsageError(
            "--task", f"cannot import module of {dotted!r} ({exc}); check the spelling and that it is installed"
        ) from exc
    except (AttributeError, ValueError) as exc:
        raise TaskUsageError(
            "--task", f"{dotted!r} does not name a class ({exc}); use package.module:ClassName"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, TrainingTask)):
        raise TaskUsageError("--task", f"{dotted!r} is not a subclass of mlk8s.training.TrainingTask")
    return obj
