"""A relaunch continues only on the data, flags and step count its checkpoint was trained with: other data is
refused with what changed (exit 2), a Delta table is read at the recorded version, and the loop ends at its
last step whatever happened to the input."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from mlk8s.checkpoint import CheckpointStore
from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK
from mlk8s.training.config import TrainConfig
from mlk8s.training.resume import data_changes, data_version_to_read
from mlk8s.training.task import TaskUsageError
from tests.tally import BAD_INPUT, FAULT, held
from tests.unit.mlk8s.training.datasets import table, write_delta, write_parquet
from tests.unit.mlk8s.training.runs import config, interrupt_at, resumed_lines, train, weights
from tests.unit.mlk8s.training.tasks import ResizableTask, StopAtStepTask

STOP_TASK = "tests.unit.mlk8s.training.tasks:StopAtStepTask"


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def data_config(tmp: Path, data: Path, **overrides: object) -> TrainConfig:
    base = config(tmp, data=str(data), batch_size=8, epochs=2, task_options={"hidden": "8"}, task=STOP_TASK)
    return replace(base, **overrides)  # type: ignore[arg-type]


def refused(cfg: TrainConfig) -> TaskUsageError:
    with pytest.raises(TaskUsageError) as exc:
        train(cfg, StopAtStepTask)
    return exc.value


@pytest.mark.timeout(120)  # before the fix, a relaunch on shrunk data looped forever, ignoring SIGTERM
@pytest.mark.parametrize(
    ("replacement", "change"),
    [
        (table(30, seed=3), "rows 50 -> 30"),  # the upstream re-ran and produced less
        (table(90, seed=3), "rows 50 -> 90"),  # ... or more
        (table(50, seed=4), "content_sha256"),  # ... or other rows of the same count
    ],
)
def test_a_relaunch_on_other_parquet_data_is_refused_saying_what_changed(
    tmp_path: Path, replacement: object, change: str
) -> None:
    data = write_parquet(tmp_path / "data" / "part-0.parquet", table(50, seed=3))
    cfg = data_config(tmp_path, data.parent)
    assert interrupt_at(cfg, 7).exit_code == EXIT_INTERRUPTED
    before = tree(tmp_path / "ckpt")
    write_parquet(data, replacement)  # type: ignore[arg-type]
    StopAtStepTask.stop = None
    problem = refused(cfg)
    kept = {k: v for k, v in tree(tmp_path / "ckpt").items() if k.startswith("ckpt-")} == {
        k: v for k, v in before.items() if k.startswith("ckpt-")
    }
    ok = problem.flag == "--data" and change in str(problem) and "\n" not in str(problem) and kept
    assert held(BAD_INPUT, "relaunch on changed data", ok), str(problem)


def test_a_delta_table_resumes_on_the_recorded_version_to_the_same_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    delta = tmp_path / "delta"
    write_delta(delta, table(40, seed=7, run_key="r1"), partition_by=["run_key"])
    StopAtStepTask.stop = None
    ref_cfg = data_config(tmp_path / "ref", delta, data_partition={"run_key": "r1"})
    assert train(ref_cfg, StopAtStepTask).exit_code == EXIT_OK
    cfg = data_config(tmp_path, delta, data_partition={"run_key": "r1"})
    assert interrupt_at(cfg, 5).exit_code == EXIT_INTERRUPTED
    assert write_delta(delta, table(25, seed=8, run_key="r1"), partition_by=["run_key"]) == 1  # the upstream re-ran
    StopAtStepTask.stop = None
    with caplog.at_level("INFO"):
        outcome = train(cfg, StopAtStepTask)
    assert outcome.exit_code == EXIT_OK and resumed_lines(caplog) == [(5, 0)]
    assert outcome.result["data"]["version"] == 0 and outcome.result["data"]["rows"] == 40
    assert held(FAULT, "upstream Delta table rewritten during training", weights(cfg) == weights(ref_cfg))


def test_a_fresh_start_records_the_latest_version_and_pinning_another_on_resume_is_refused(tmp_path: Path) -> None:
    delta = tmp_path / "delta"
    write_delta(delta, table(40, seed=7))
    write_delta(delta, table(40, seed=9))
    cfg = data_config(tmp_path, delta)
    assert interrupt_at(cfg, 3).exit_code == EXIT_INTERRUPTED
    StopAtStepTask.stop = None
    problem = refused(replace(cfg, data_version=0))
    ok = problem.flag == "--data-version" and "trained on version 1" in str(problem)
    assert held(BAD_INPUT, "--data-version other than the recorded one", ok)
    assert train(replace(cfg, data_version=1), StopAtStepTask).result["data"]["version"] == 1


def test_a_user_task_whose_data_size_changed_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, task="tests.unit.mlk8s.training.tasks:ResizableTask", task_options={}, batch_size=8)
    ResizableTask.rows = 32
    assert train(cfg, ResizableTask).exit_code == EXIT_OK
    ResizableTask.rows = 40
    with pytest.raises(TaskUsageError, match=r"train_size 32 -> 40") as exc:
        train(cfg, ResizableTask)
    assert held(BAD_INPUT, "relaunch on changed data", exc.value.flag == "--data")


def test_an_old_checkpoint_without_a_data_record_is_still_refused_when_the_step_count_changed(tmp_path: Path) -> None:
    """Checkpoints written before the data fingerprint existed record only the total steps."""
    import json

    cfg = config(tmp_path, task="tests.unit.mlk8s.training.tasks:ResizableTask", task_options={}, batch_size=8)
    ResizableTask.rows = 32
    train(cfg, ResizableTask)
    store = CheckpointStore(cfg.checkpoint_uri)
    latest = store.list_checkpoints()[-1]
    state = tmp_path / "ckpt" / latest.name / "state.json"
    body = json.loads(state.read_text())
    del body["run"]["data"]
    manifest = tmp_path / "ckpt" / latest.name / "MANIFEST.json"
    raw = json.dumps(body, sort_keys=True).encode()
    marker = json.loads(manifest.read_text())
    marker["files"]["state.json"] = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    state.write_bytes(raw)
    manifest.write_text(json.dumps(marker))
    ResizableTask.rows = 24
    with pytest.raises(TaskUsageError, match=r"total steps 12 -> 9") as exc:
        train(cfg, ResizableTask)
    assert held(BAD_INPUT, "relaunch on changed data", exc.value.flag == "--data")


def test_a_copied_in_higher_generation_checkpoint_is_not_the_resume_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, keep_last=1)
    assert interrupt_at(cfg, 8).exit_code == EXIT_INTERRUPTED
    store = CheckpointStore(cfg.checkpoint_uri)
    emergency = store.list_checkpoints()[-1]
    assert emergency.step == 8
    stray = tmp_path / "ckpt" / "ckpt-g00000009-s000000000003"
    shutil.copytree(tmp_path / "ckpt" / emergency.name, stray)
    StopAtStepTask.stop = None
    with caplog.at_level("INFO"):
        assert interrupt_at(cfg, 6).exit_code == EXIT_INTERRUPTED  # resumes from 8, stops at 8 + 6
    assert resumed_lines(caplog)[-1] == (8, 0)
    caplog.clear()
    StopAtStepTask.stop = None
    with caplog.at_level("INFO"):
        outcome = train(replace(cfg, task=STOP_TASK), StopAtStepTask)
    ok = resumed_lines(caplog) == [(14, 0)] and outcome.exit_code == EXIT_OK and stray.exists()
    assert held(FAULT, "higher-generation checkpoint copied in", ok), "retention deleted the checkpoint needed"


def test_data_changes_are_listed_in_a_readable_order() -> None:
    old = {"kind": "delta", "uri": "/t", "version": 3, "rows": 10, "content_sha256": "a" * 64, "train_size": 8}
    new = {**old, "version": 4, "rows": 12, "content_sha256": "b" * 64, "train_size": 10}
    assert data_changes(old, new) == [
        "version 3 -> 4",
        "rows 10 -> 12",
        "train_size 8 -> 10",
        "content_sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb",
    ]
    assert data_changes(old, dict(old)) == []


def test_the_version_read_is_the_recorded_one_unless_none_was_recorded(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert data_version_to_read(replace(cfg, data_version=4), None) == 4
    assert data_version_to_read(cfg, None) is None
