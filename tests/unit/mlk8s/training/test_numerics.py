"""A diverging run stops with exit 1 and a message saying so: no NaN checkpoint, no NaN model, the last good
checkpoint kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlk8s.checkpoint import CheckpointStore
from mlk8s.pod_contract import EXIT_ERROR
from mlk8s.training.cli import main
from mlk8s.training.numerics import NonFiniteError, non_finite
from tests.tally import BAD_INPUT, FAULT, held
from tests.unit.mlk8s.training.tasks import NaNAtStepTask

TINY = ["--epochs", "2", "--batch-size", "128", "--task-option", "hidden=8", "--task-option", "shifts=0"]


def run(tmp_path: Path, *extra: str) -> int:
    return main(["--checkpoint-uri", str(tmp_path / "ckpt"), "--output-uri", str(tmp_path / "out"), *TINY, *extra])


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    NaNAtStepTask.nan_from_step, NaNAtStepTask.steps_seen = 7, 0
    task = "tests.unit.mlk8s.training.tasks:NaNAtStepTask"
    assert run(tmp_path, "--task", task, "--checkpoint-every-steps", "5") == EXIT_ERROR
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m mlk8s.training: error: the loss became non-finite (nan) between steps 6 and 10")
    assert last.endswith(
        "; the last good checkpoint (" + str(tmp_path / "ckpt" / "ckpt-g00000001-s000000000005") + ") stays"
    )
    assert "Traceback" not in err
    assert [i.step for i in CheckpointStore(str(tmp_path / "ckpt")).list_checkpoints()] == [5]
    ok = not (tmp_path / "out" / "model.safetensors").exists() and not (xcom / "return.json").exists()
    assert held(FAULT, "NaN loss mid-run", ok)


def test_a_learning_rate_that_diverges_publishes_nothing(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "--lr", "1e30", "--log-level", "ERROR") == EXIT_ERROR
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("non-finite" in err or "NaN" in err)
    assert held(BAD_INPUT, "diverging --lr", not (tmp_path / "out" / "model.safetensors").exists())
    assert CheckpointStore(str(tmp_path / "ckpt")).list_checkpoints() == []


def test_non_finite_names_the_floating_tensors_holding_nan_or_inf() -> None:
    import torch

    named = [("a", torch.ones(3)), ("b", torch.tensor([1.0, float("inf")])), ("c", torch.tensor([0, 1]))]
    assert non_finite(named) == ["b"]
    big = torch.finfo(torch.float32).max
    named = [
        ("nan", torch.tensor([[0.0, float("nan")], [1.0, 2.0]])),
        ("minus_inf", torch.tensor([float("-inf"), 0.0])),
        ("huge_but_finite", torch.tensor([big, big, -big])),
        ("empty", torch.ones(0)),
        ("half_inf", torch.tensor([1.0, 70000.0], dtype=torch.float16)),  # 70000 overflows float16
        ("bf16", torch.ones(4, dtype=torch.bfloat16)),
        ("flags", torch.tensor([True, False])),
    ]
    assert non_finite(named) == ["nan", "minus_inf", "half_inf"]
    assert issubclass(NonFiniteError, ArithmeticError)
