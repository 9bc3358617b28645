"""The final model is published as model.safetensors then model.json (the marker); non-finite weights never."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlk8s.storage import resolve
from mlk8s.training.numerics import NonFiniteError
from mlk8s.training.publish import MODEL_FILE, MODEL_INFO_FILE, publish


def test_the_model_and_its_marker_are_written(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    model = torch.nn.Linear(3, 2)
    info: dict = {"steps": 4}
    loc = publish(resolve(str(tmp_path / "out")), model, info)
    assert loc.path == str(tmp_path / "out" / MODEL_FILE)
    marker = json.loads((tmp_path / "out" / MODEL_INFO_FILE).read_text())
    assert marker["steps"] == 4 and marker["model_uri"] == loc.uri and len(marker["weights_sha256"]) == 64
    assert torch.equal(load_file(loc.path)["weight"], model.weight.detach())


def test_non_finite_weights_are_not_published(tmp_path: Path) -> None:
    import torch

    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(NonFiniteError, match=r"NaN or infinity \(in bias\)"):
        publish(resolve(str(tmp_path / "out")), model, {})
    assert not (tmp_path / "out").exists()
