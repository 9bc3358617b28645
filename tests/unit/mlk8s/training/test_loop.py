"""The training loop in-process: interruption, emergency checkpoint, exact resume, fallback, plug-ins."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mlk8s.checkpoint import MANIFEST, CheckpointStore
from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK
from mlk8s.training.example import ClassifierTask
from mlk8s.training.loop import Outcome, StopSignal, TrainConfig, Trainer, epoch_permutation
from tests.unit.mlk8s.training.tasks import LinearRegressionTask, StopAtStepTask

# 1437 training rows / 128 = 12 steps per epoch, 3 epochs: 36 steps in well under a second.
SMALL = {"hidden": "24", "layers": "1", "shifts": "0"}


def config(tmp: Path, **overrides: object) -> TrainConfig:
    base = TrainConfig(
        checkpoint_uri=str(tmp / "ckpt"),
        output_uri=str(tmp / "out"),
        task_options=dict(SMALL),
        epochs=3,
        seed=5,
        batch_size=128,
        checkpoint_every_steps=5,
        heartbeat_seconds=0,
        log_every_steps=0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def train(cfg: TrainConfig, task: type = ClassifierTask, stop: StopSignal | None = None) -> Outcome:
    trainer = Trainer(cfg, task, stop)
    trainer.prepare()
    return trainer.run()


def weights(cfg: TrainConfig) -> str:
    return hashlib.sha256((Path(cfg.output_uri) / "model.safetensors").read_bytes()).hexdigest()


def interrupt_at(cfg: TrainConfig, step: int) -> Outcome:
    stop = StopSignal()
    StopAtStepTask.stop, StopAtStepTask.stop_at_step, StopAtStepTask.steps_seen = stop, step, 0
    cfg = replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask")
    return train(cfg, StopAtStepTask, stop)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Weights of an uninterrupted run: what every interrupted variant must reproduce byte for byte."""
    cfg = config(tmp_path_factory.mktemp("reference"), task="tests.unit.mlk8s.training.tasks:StopAtStepTask")
    StopAtStepTask.stop = None
    outcome = train(cfg, StopAtStepTask)
    assert outcome.exit_code == EXIT_OK
    return weights(cfg)


def resumed_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    found = []
    for record in caplog.records:
        match = re.fullmatch(r"mlk8s: resumed from step=(\d+) work_lost_steps=(\d+)", record.getMessage())
        if match:
            found.append((int(match.group(1)), int(match.group(2))))
    return found


def test_uninterrupted_run_writes_model_json_and_result(tmp_path: Path, reference: str) -> None:
    cfg = config(tmp_path, task="tests.unit.mlk8s.training.tasks:StopAtStepTask")
    StopAtStepTask.stop = None
    outcome = train(cfg, StopAtStepTask)
    assert outcome.exit_code == EXIT_OK
    assert weights(cfg) == reference
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert info["weights_sha256"] == reference
    assert info["steps"] == 36 and info["epochs"] == 3 and info["resumes"] == 0 and info["work_lost_steps"] == 0
    assert 0.0 <= info["metrics"]["held_out_accuracy"] <= 1.0
    assert info["task_info"]["data"] == "sklearn:digits"
    result = outcome.result
    assert result["model_uri"] == str(tmp_path / "out" / "model.safetensors")
    assert result["checkpoint_uri"].endswith("-s000000000036")
    assert {"metrics", "steps", "resumes", "work_lost_steps"} <= set(result)


def test_sigterm_writes_emergency_checkpoint_and_resume_is_bit_exact(
    tmp_path: Path, reference: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path)
    first = interrupt_at(cfg, 8)  # between the step checkpoints at 5 and 10, mid-epoch
    assert first.exit_code == EXIT_INTERRUPTED
    assert first.result["emergency_checkpoint"] is True
    assert first.result["checkpoint_step"] == 8 and first.result["steps"] == 8
    with caplog.at_level(logging.INFO):
        second = train(replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask"), StopAtStepTask)
    assert second.exit_code == EXIT_OK
    assert resumed_lines(caplog) == [(8, 0)]
    assert weights(cfg) == reference
    assert second.result["resumes"] == 1 and second.result["work_lost_steps"] == 0


def test_no_grace_left_skips_the_emergency_checkpoint_and_reports_lost_work(
    tmp_path: Path, reference: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, termination_grace_seconds=0.0)
    with caplog.at_level(logging.INFO):
        first = interrupt_at(cfg, 13)
    assert first.exit_code == EXIT_INTERRUPTED
    assert first.result["emergency_checkpoint"] is False
    assert first.result["checkpoint_step"] == 12  # the epoch-end checkpoint stands
    assert "emergency checkpoint skipped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        second = train(replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask"), StopAtStepTask)
    assert resumed_lines(caplog) == [(12, 1)]
    assert second.result["work_lost_steps"] == 1
    assert weights(cfg) == reference


def test_corrupt_latest_checkpoint_falls_back_and_still_matches(
    tmp_path: Path, reference: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path)
    interrupt_at(cfg, 22)
    store = CheckpointStore(cfg.checkpoint_uri)
    latest = store.list_checkpoints()[-1]
    assert latest.step == 22
    tensors = Path(cfg.checkpoint_uri) / latest.name / "state.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-7])
    with caplog.at_level(logging.INFO):
        outcome = train(replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask"), StopAtStepTask)
    assert outcome.exit_code == EXIT_OK
    assert "truncated file state.safetensors" in caplog.text
    assert resumed_lines(caplog) == [(20, 2)]
    assert weights(cfg) == reference


def test_rerun_of_a_finished_job_is_idempotent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path)
    train(cfg)
    first = weights(cfg)
    (Path(cfg.output_uri) / "model.safetensors").unlink()
    with caplog.at_level(logging.INFO):
        outcome = train(cfg)
    assert outcome.exit_code == EXIT_OK and weights(cfg) == first
    assert resumed_lines(caplog) == [(36, 0)]


def test_retention_never_deletes_the_checkpoint_resumed_from(tmp_path: Path) -> None:
    cfg = config(tmp_path, keep_last=1)
    interrupt_at(cfg, 3)  # emergency checkpoint at step 3
    train(replace(cfg, task="tests.unit.mlk8s.training.tasks:StopAtStepTask"), StopAtStepTask)
    names = [i.name for i in CheckpointStore(cfg.checkpoint_uri).list_checkpoints()]
    assert names == ["ckpt-g00000001-s000000000003", "ckpt-g00000002-s000000000036"]
    assert all((Path(cfg.checkpoint_uri) / n / MANIFEST).exists() for n in names)


def test_user_task_plug_in_trains(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        task="tests.unit.mlk8s.training.tasks:LinearRegressionTask",
        task_options={"rows": "32"},
        batch_size=8,
        epochs=2,
        lr=0.05,
    )
    outcome = train(cfg, LinearRegressionTask)
    assert outcome.exit_code == EXIT_OK
    assert outcome.result["steps"] == 8
    assert outcome.result["metrics"]["mse"] >= 0.0


def test_amp_on_cpu_trains_with_bfloat16(tmp_path: Path) -> None:
    outcome = train(config(tmp_path, amp=True, epochs=1))
    assert outcome.exit_code == EXIT_OK and outcome.result["steps"] == 12


def test_parquet_embeddings_with_string_labels(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    data = tmp_path / "embedded"
    data.mkdir()
    for part in range(2):
        emb = rng.normal(size=(40, 6)).astype(np.float32)
        labels = np.where(emb[:, 0] > 0, "pos", "neg")
        table = pa.table({"id": np.arange(40), "embedding": list(emb), "label": labels})
        pq.write_table(table, data / f"part-{part}.parquet")
    (data / "_SUCCESS").write_text("")
    cfg = config(tmp_path, data=str(data), batch_size=16, epochs=2, task_options={"hidden": "8"})
    outcome = train(cfg)
    assert outcome.exit_code == EXIT_OK
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert info["task_info"]["class_names"] == ["neg", "pos"]
    assert info["task_info"]["num_features"] == 6
    assert info["task_info"]["train_rows"] + info["task_info"]["held_out_rows"] == 80


def test_epoch_permutation_depends_only_on_seed_and_epoch() -> None:
    import torch

    a = epoch_permutation(3, 0, 100)
    assert torch.equal(a, epoch_permutation(3, 0, 100))
    assert torch.equal(torch.sort(a).values, torch.arange(100))
    assert not torch.equal(a, epoch_permutation(3, 1, 100))
    assert not torch.equal(a, epoch_permutation(4, 0, 100))


def test_trains_on_a_committed_preprocessing_output(tmp_path: Path) -> None:
    """The nightly DAG's shape: a Delta table; only the files its log commits are read (not a killed run's)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    rng = np.random.default_rng(1)
    output = str(tmp_path / "embedded")
    for _ in range(2):
        emb = rng.normal(size=(30, 5)).astype(np.float32)
        table = pa.table(
            {"id": [str(i) for i in range(30)], "label": (emb[:, 1] > 0).astype(np.int64), "embedding": list(emb)}
        )
        write_deltalake(output, table, mode="append")
    pq.write_table(table, tmp_path / "embedded" / "part-of-a-killed-run.parquet")  # never committed
    outcome = train(config(tmp_path, data=output, batch_size=16, epochs=1, task_options={"hidden": "8"}))
    assert outcome.exit_code == EXIT_OK
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert info["task_info"]["train_rows"] + info["task_info"]["held_out_rows"] == 60
    assert info["task_info"]["num_classes"] == 2


def test_sigterm_before_the_first_step_exits_without_writing_a_checkpoint(tmp_path: Path) -> None:
    stop = StopSignal()
    stop.request()
    outcome = train(config(tmp_path), ClassifierTask, stop)
    assert outcome.exit_code == EXIT_INTERRUPTED
    assert outcome.result["steps"] == 0 and outcome.result["checkpoint_uri"] is None
    assert CheckpointStore(str(tmp_path / "ckpt")).list_checkpoints() == []


def test_shifted_digits_adds_four_one_pixel_moves() -> None:
    import numpy as np

    from mlk8s.training.example import shifted_digits

    image = np.zeros((1, 64), dtype=np.float32)
    image[0, 3 * 8 + 4] = 1.0  # row 3, column 4
    features, labels = shifted_digits(image, np.array([7]))
    assert features.shape == (5, 64) and labels.tolist() == [7] * 5
    lit = sorted(divmod(int(np.flatnonzero(f)[0]), 8) for f in features)
    assert lit == [(2, 4), (3, 3), (3, 4), (3, 5), (4, 4)]
