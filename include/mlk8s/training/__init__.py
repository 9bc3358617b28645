"""Checkpointed torch training for pods that may be evicted; see ``python -m mlk8s.training --help``."""

from __future__ import annotations

from mlk8s.training.task import TaskContext, TaskUsageError, TrainingTask, load_task_class

__all__ = ["TaskContext", "TaskUsageError", "TrainingTask", "load_task_class"]
