"""The plug-in point: dotted paths to a task class, and option parsing that names what to fix."""

from __future__ import annotations

import pytest

from mlk8s.training.example import ClassifierTask
from mlk8s.training.task import TaskContext, TaskUsageError, TrainingTask, load_task_class


def test_both_dotted_forms_load_the_class() -> None:
    assert load_task_class("mlk8s.training.example:ClassifierTask") is ClassifierTask
    assert load_task_class("mlk8s.training.example.ClassifierTask") is ClassifierTask


@pytest.mark.parametrize(
    ("dotted", "message"),
    [
        ("nodots", "not a dotted path"),
        ("no_such_pkg.mod:Task", "cannot import module"),
        ("mlk8s.training.example:Nope", "has no attribute"),
        ("mlk8s.training.task:TaskContext", "not a subclass"),
    ],
)
def test_bad_task_paths_name_the_flag(dotted: str, message: str) -> None:
    with pytest.raises(TaskUsageError, match=message) as exc:
        load_task_class(dotted)
    assert exc.value.flag == "--task"


def test_options_are_checked_by_the_task() -> None:
    context = TaskContext(None, 0, 0.1, 8, 1, "cpu", {"hidden": "x"})
    with pytest.raises(TaskUsageError, match="hidden='x' must be an integer"):
        context.int_option("hidden", 4)
    with pytest.raises(TaskUsageError, match="unknown option"):
        TrainingTask(TaskContext(None, 0, 0.1, 8, 1, "cpu", {"typo": "1"}))
    assert TrainingTask(TaskContext(None, 0, 0.1, 8, 1, "cpu", {})).data_fingerprint() == {}
