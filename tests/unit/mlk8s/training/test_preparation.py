"""Preparing a run: bad input is refused before anything is written; a resume reads what its checkpoint recorded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mlk8s.training.example import ClassifierTask
from mlk8s.training.preparation import prepare
from mlk8s.training.signals import StopSignal
from mlk8s.training.task import TaskUsageError
from tests.unit.mlk8s.training.datasets import table, write_delta
from tests.unit.mlk8s.training.runs import config, interrupt_at


def test_bad_data_is_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    cfg = config(tmp_path, data=str(tmp_path / "missing"), task_options={"hidden": "8"})
    with pytest.raises(TaskUsageError, match="does not exist"):
        prepare(cfg, ClassifierTask, StopSignal())
    assert not (tmp_path / "ckpt").exists()


def test_a_fresh_run_reads_the_latest_version_and_a_resume_the_recorded_one(tmp_path: Path) -> None:
    delta = tmp_path / "delta"
    write_delta(delta, table(30, seed=1))
    cfg = config(tmp_path, data=str(delta), batch_size=8, task_options={"hidden": "8"})
    fresh = prepare(cfg, ClassifierTask, StopSignal())
    assert fresh.resume is None and fresh.data["version"] == 0 and fresh.data["rows"] == 30
    assert fresh.total_steps == fresh.steps_per_epoch * cfg.epochs
    interrupt_at(cfg, 2)
    write_delta(delta, table(50, seed=2))
    resumed = prepare(replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask"), ClassifierTask, StopSignal())
    assert resumed.resume is not None and resumed.resume.step == 2
    assert resumed.data["version"] == 0 and resumed.data["rows"] == 30
