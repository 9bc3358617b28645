"""Score a trained model on the held-out rows of a dataset, through the training task that built it.

The task is rebuilt from its dotted path and options on the given data and split seed, so its ``setup``
draws the same held-out rows the candidate never trained on, and its own ``evaluate`` computes the metrics
(the same numbers training reported). A model whose weights do not fit what the task builds on this data, or
whose classes differ from the data's, cannot be scored here: that is reported, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlk8s.model_registry.model_files import ModelFiles
from mlk8s.training.task import TaskContext, TrainingTask, load_task_class


@dataclass(frozen=True)
class Score:
    """Metrics of one model on the held-out rows, or why it could not be scored (``incomparable``)."""

    metrics: dict[str, float | None] = field(default_factory=dict)
    incomparable: str | None = None
    task_info: dict[str, Any] = field(default_factory=dict)


def _finite(value: Any) -> float | None:
    import math

    number = float(value)
    return number if math.isfinite(number) else None


class Scorer:
    """Builds each (task, options) once on ``data`` with split seed ``seed`` and scores models with it.

    ``data_partition`` and ``data_version`` pick the part and version of a Delta table training read, so the
    held-out rows are the very ones the candidate never trained on.
    """

    def __init__(
        self,
        *,
        data: str | None,
        seed: int,
        threads: int = 1,
        data_partition: Mapping[str, str] | None = None,
        data_version: int | None = None,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.data = data
        self.seed = seed
        self.data_partition = dict(data_partition or {})
        self.data_version = data_version
        self._tasks: dict[tuple[str, tuple[tuple[str, str], ...]], TrainingTask] = {}

    def task(self, dotted: str, options: Mapping[str, str]) -> TrainingTask:
        """The task, set up on this data; raises TaskUsageError (bad task, options or data) as training would."""
        import torch

        key = (dotted, tuple(sorted(options.items())))
        if key not in self._tasks:
            context = TaskContext(
                data=self.data,
                seed=self.seed,
                lr=1e-3,  # unused by evaluation; the context needs a value
                batch_size=32,
                epochs=1,
                device=torch.device("cpu"),
                options=dict(options),
                data_partition=self.data_partition,
                data_version=self.data_version,
            )
            task = load_task_class(dotted)(context)
            task.setup()
            self._tasks[key] = task
        return self._tasks[key]

    def score(self, model: ModelFiles, options: Mapping[str, str]) -> Score:
        import torch
        from safetensors.torch import load as load_tensors

        task = self.task(model.info.task, options)
        described = task.describe()
        trained_classes = model.info.task_info.get("class_names")
        if "class_names" in model.info.task_info and described.get("class_names") != trained_classes:
            return Score(
                incomparable=f"it was trained on classes {trained_classes}, this data has "
                f"{described.get('class_names')}",
                task_info=described,
            )
        net = task.build_model()
        try:
            net.load_state_dict(load_tensors(model.weights), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
            return Score(incomparable=f"its weights do not fit the model the task builds here: {first}")
        net.eval()
        with torch.no_grad():
            metrics = {name: _finite(value) for name, value in task.evaluate(net).items()}
        return Score(metrics=metrics, task_info=described)
