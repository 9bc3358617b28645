"""The run's history stays bounded for any length and comes out the same across relaunches."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK
from mlk8s.training.history import MAX_EVENTS, MAX_LOSS_POINTS, History
from tests.unit.mlk8s.training.runs import config, interrupt_at, train
from tests.unit.mlk8s.training.tasks import StopAtStepTask


def feed(history: History, start: int, stop: int) -> None:
    import torch

    for step in range(start + 1, stop + 1):
        history.on_step(step, step // 100, torch.tensor(float(step % 7)))


def test_the_loss_curve_stays_bounded_and_covers_every_step() -> None:
    history = History()
    feed(history, 0, 30_000)
    body = history.to_json()
    assert len(body["loss"]) < MAX_LOSS_POINTS and body["loss_every_steps"] >= 30_000 // MAX_LOSS_POINTS
    steps = [p["step"] for p in body["loss"]]
    assert steps == sorted(steps) and steps[-1] <= 30_000
    assert all(s % body["loss_every_steps"] == 0 for s in steps[:-1])
    covered = body["loss_every_steps"] * len(body["loss"])
    assert covered >= steps[-1] - body["loss_every_steps"]


def test_a_history_restored_mid_interval_continues_as_if_never_stopped() -> None:
    whole = History()
    feed(whole, 0, 5000)
    first = History()
    feed(first, 0, 2345)  # stopped mid-interval: the open interval travels in the state
    restored = History.from_state(json.loads(json.dumps(first.state())), "cpu")
    feed(restored, 2345, 5000)
    assert restored.to_json() == whole.to_json()


def test_a_history_checkpointed_in_the_older_shape_still_restores() -> None:
    """Checkpoints written before the compact state carried the public shape plus ``loss_steps``."""
    whole = History()
    feed(whole, 0, 5000)
    first = History()
    feed(first, 0, 2345)
    compact = first.state()
    older = {
        **first.to_json(),
        "loss_totals": compact["loss_totals"],
        "loss_steps": [n for _, _, n in compact["loss_points"]],
        "window": compact["window"],
        "pending_checkpoints": [],
    }
    restored = History.from_state(json.loads(json.dumps(older)), "cpu")
    feed(restored, 2345, 5000)
    assert restored.to_json() == whole.to_json()


def test_events_keep_the_newest_and_count_all() -> None:
    history = History()
    for i in range(MAX_EVENTS + 20):
        history.checkpoint_committed(i, 0, f"uri-{i}", float(i))
        history.resumed(i, 1, float(i))
    body = history.to_json()
    assert len(body["checkpoints"]) == MAX_EVENTS and body["checkpoints"][-1]["uri"] == f"uri-{MAX_EVENTS + 19}"
    assert body["checkpoints_total"] == MAX_EVENTS + 20 and body["resumes_total"] == MAX_EVENTS + 20
    assert set(body["resumes"][0]) == {"from_step", "work_lost_steps", "time"}


def test_the_result_carries_the_history_across_a_relaunch(tmp_path: Path) -> None:
    StopAtStepTask.stop = None
    whole = train(config(tmp_path / "whole", task="tests.unit.mlk8s.training.tasks:StopAtStepTask"), StopAtStepTask)
    cfg = config(tmp_path / "split")
    first = interrupt_at(cfg, 13)
    assert first.exit_code == EXIT_INTERRUPTED and first.result["history"]["loss"]
    StopAtStepTask.stop = None
    second = train(replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask"), StopAtStepTask)
    assert whole.exit_code == second.exit_code == EXIT_OK
    a, b = whole.result["history"], second.result["history"]
    assert a["loss"] == b["loss"] and len(a["loss"]) == 36, "the loss curve is the same with or without the kill"
    assert [r["from_step"] for r in b["resumes"]] == [13] and b["resumes_total"] == 1
    steps = [c["step"] for c in b["checkpoints"]]
    assert steps == [5, 10, 12, 13, 15, 20, 24, 25, 30, 35, 36]
    assert all(c["uri"].startswith(str(tmp_path / "split" / "ckpt")) for c in b["checkpoints"])
    assert json.loads(json.dumps(b)) == b


@pytest.mark.parametrize("epochs", [1000])
def test_a_long_run_keeps_a_few_hundred_points(tmp_path: Path, epochs: int) -> None:
    cfg = config(
        tmp_path,
        task="tests.unit.mlk8s.training.tasks:LinearRegressionTask",
        task_options={"rows": "8"},
        batch_size=8,
        epochs=epochs,
        checkpoint_every_steps=0,
        checkpoint_every_epochs=0,
    )
    from tests.unit.mlk8s.training.tasks import LinearRegressionTask

    history = train(cfg, LinearRegressionTask).result["history"]
    assert MAX_LOSS_POINTS // 2 <= len(history["loss"]) <= MAX_LOSS_POINTS
    assert history["loss"][-1]["epoch"] == epochs - 1


def test_a_checkpoint_in_flight_at_a_snapshot_is_committed_in_the_resumed_history() -> None:
    """The writer commits in order: resuming from step 13's checkpoint means step 12's, still being written when
    13 was snapshotted, landed too (without this the resumed history would miss it, depending on timing)."""
    history = History()
    history.checkpoint_taken(12, 0, "file:///c/12", 1.0)
    snapshot_at_13 = history.state()  # 12's commit has not landed yet
    history.checkpoint_committed(12, 0, "file:///c/12", 2.0)
    assert [c["step"] for c in history.state()["checkpoints"]] == [12] and history.state()["pending_checkpoints"] == []
    resumed = History.from_state(json.loads(json.dumps(snapshot_at_13)), "cpu")
    body = resumed.to_json()
    assert [c["step"] for c in body["checkpoints"]] == [12] and body["checkpoints_total"] == 1
