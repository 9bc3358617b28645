"""A model directory is read only when it is a finished training output whose weights match their checksum."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlk8s.model_registry.model_files import ModelFilesError, read_model


def test_reads_a_finished_training_output(trained: dict[str, Path]) -> None:
    model = read_model(str(trained["weak"]))
    assert model.info.task == "mlk8s.training.example:ClassifierTask"
    assert model.info.seed == 0
    assert "held_out_accuracy" in model.info.metrics
    assert len(model.sha256) == 64 and model.weights


def test_a_directory_without_model_json_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match=r"--candidate: .* holds no model.json"):
        read_model(str(tmp_path))


def test_replaced_weights_are_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained["weak"], copy)
    shutil.copy(trained["strong"] / "model.safetensors", copy / "model.safetensors")
    with pytest.raises(ModelFilesError, match="were replaced or damaged after training"):
        read_model(str(copy), flag="--the-flag")


def test_a_damaged_model_json_names_the_file(trained: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained["weak"], copy)
    (copy / "model.json").write_text('{"task": 3')
    with pytest.raises(ModelFilesError, match="is not a valid model.json"):
        read_model(str(copy))
