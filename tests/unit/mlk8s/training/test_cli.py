"""Bad input is refused before training starts, with exit code 2 and a message naming the flag; nothing
already in the checkpoint location is touched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlk8s.pod_contract import EXIT_OK, EXIT_USAGE
from mlk8s.training.cli import main

TINY = ["--epochs", "1", "--batch-size", "256", "--task-option", "hidden=8", "--task-option", "layers=1"]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_main(tmp_path: Path, *extra: str) -> int:
    args = ["--checkpoint-uri", str(tmp_path / "ckpt"), "--output-uri", str(tmp_path / "out"), *TINY, *extra]
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--epochs", "-1"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--keep-last", "0"], "--keep-last"),
        (["--checkpoint-every-steps", "-5"], "--checkpoint-every-steps"),
        (["--termination-grace-seconds", "-1"], "--termination-grace-seconds"),
        (["--threads", "0"], "--threads"),
        (["--task-option", "novalue"], "--task-option"),
        (["--task-option", "bogus=1"], "--task-option"),
        (["--task-option", "hidden=abc"], "--task-option"),
        (["--task-option", "dropout=1.5"], "--task-option"),
        (["--task", "no_such_package.module:Task"], "--task"),
        (["--task", "mlk8s.training.example:NoSuchClass"], "--task"),
        (["--task", "tests.unit.mlk8s.training.tasks:NotATask"], "--task"),
        (["--task", "notdotted"], "--task"),
        (["--data", "/definitely/not/here.parquet"], "--data"),
        (["--data", "/any.parquet", "--task-option", "shifts=1"], "--task-option"),
        (["--task-option", "shifts=3"], "--task-option"),
        (["--device", "tpu"], "--device"),
    ],
)
def test_bad_flag_is_refused_before_training(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str], extra: list[str], flag: str
) -> None:
    assert run_main(tmp_path, *extra) == EXIT_USAGE
    err = capsys.readouterr().err
    assert flag in err
    assert not (tmp_path / "ckpt" / "generations").exists(), "training state was touched before validation"
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_missing_required_uri_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--output-uri", "/tmp/x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--checkpoint-uri" in err and len(err.strip().splitlines()) == 1


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert run_main(tmp_path, "--device", "cuda") == EXIT_USAGE
    assert "--device" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--checkpoint-uri", "--output-uri"])
def test_unwritable_uri_is_a_usage_error(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    uris = {"--checkpoint-uri": str(tmp_path / "ckpt"), "--output-uri": str(tmp_path / "out")}
    uris[flag] = str(blocker / "sub")
    code = main([a for kv in uris.items() for a in kv] + TINY)
    assert code == EXIT_USAGE
    assert flag in capsys.readouterr().err
    assert blocker.read_text() == "keep me"


def test_parquet_without_the_expected_columns(tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"vector": [[1.0, 2.0]], "label": [1]}), tmp_path / "d.parquet")
    assert run_main(tmp_path, "--data", str(tmp_path / "d.parquet")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--data" in err and "embedding" in err


def test_unwritable_result_dir_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MLK8S_XCOM_DIR", str(blocker / "xcom"))
    assert run_main(tmp_path) == EXIT_USAGE
    assert "MLK8S_XCOM_DIR" in capsys.readouterr().err


def test_resume_with_different_flags_is_refused_and_keeps_checkpoints(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(tmp_path, "--seed", "1", "--task-option", "shifts=0") == EXIT_OK
    result = json.loads((xcom / "return.json").read_text())
    assert result["status"] == "done" and result["steps"] == 6
    checkpoints = {k: v for k, v in tree_digest(tmp_path / "ckpt").items() if k.startswith("ckpt-")}
    assert run_main(tmp_path, "--seed", "2", "--task-option", "shifts=0") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--seed" in err and "--checkpoint-uri" in err
    after = {k: v for k, v in tree_digest(tmp_path / "ckpt").items() if k.startswith("ckpt-")}
    assert after == checkpoints


def test_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlk8s.training", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--checkpoint-uri",
        "--output-uri",
        "--epochs",
        "--seed",
        "--checkpoint-every-steps",
        "--keep-last",
        "--termination-grace-seconds",
        "--batch-size",
        "--lr",
        "--data",
        "--task",
        "--device",
        "--amp",
    ):
        assert flag in out
    assert "75" in out


def test_zombie_is_fenced_off_and_exits_with_an_error(tmp_path: Path, xcom: Path) -> None:
    from mlk8s.checkpoint import CheckpointStore
    from mlk8s.pod_contract import EXIT_ERROR
    from tests.unit.mlk8s.training.tasks import SupersededTask

    SupersededTask.checkpoint_uri = str(tmp_path / "ckpt")
    SupersededTask.claim_at_step, SupersededTask.steps_seen = 3, 0
    code = run_main(
        tmp_path,
        "--task",
        "tests.unit.mlk8s.training.tasks:SupersededTask",
        "--batch-size",
        "128",
        "--checkpoint-every-steps",
        "5",
        "--log-level",
        "ERROR",
    )
    assert code == EXIT_ERROR
    store = CheckpointStore(str(tmp_path / "ckpt"))
    assert store.generations() == [1, 2]
    assert store.list_checkpoints() == [], "the zombie committed after a newer process claimed the store"
    assert not (tmp_path / "out" / "model.safetensors").exists()
