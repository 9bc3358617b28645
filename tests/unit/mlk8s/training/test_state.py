"""Training state survives the trip through safetensors + JSON exactly, without pickle."""

from __future__ import annotations

import random

import pytest

from mlk8s.training import state as state_io


def test_split_join_round_trips_nested_values() -> None:
    import torch

    value = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 2)}, 1: {}},
        "param_groups": [{"lr": 0.1 + 1e-17, "betas": (0.9, 0.999), "params": [0, 1], "__odd": None}],
        "ratio": 1 / 3,
        "flags": [True, None, "x"],
    }
    tensors: dict[str, torch.Tensor] = {}
    skeleton = state_io.split(value, "opt", tensors)
    files = state_io.serialize(tensors, skeleton)
    model, rest = state_io.deserialize(files)
    assert model == {}
    assert rest["ratio"] == value["ratio"] and rest["flags"] == value["flags"]
    assert rest["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(rest["state"]) == {0, 1}
    assert torch.equal(rest["state"][0]["exp_avg"], value["state"][0]["exp_avg"])  # type: ignore[index]
    assert b"pickle" not in files[state_io.JSON_FILE]


def test_unsupported_values_are_refused_with_their_path() -> None:
    with pytest.raises(TypeError, match="opt.x"):
        state_io.split({"x": object()}, "opt", {})


def test_optimizer_state_round_trips_through_files() -> None:
    import torch

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
    tensors, skeleton = state_io.encode(model.state_dict(), {"optimizer": opt.state_dict()})
    model_state, rest = state_io.deserialize(state_io.serialize(tensors, skeleton))
    clone = torch.nn.Linear(3, 2)
    clone.load_state_dict(model_state)
    opt2 = torch.optim.AdamW(clone.parameters(), lr=0.5)
    opt2.load_state_dict(rest["optimizer"])
    x = torch.randn(5, 3)
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert torch.equal(model.weight, clone.weight) and torch.equal(model.bias, clone.bias)


def test_rng_capture_and_restore_replays_every_generator() -> None:
    import numpy as np
    import torch

    captured = state_io.capture_rng()
    tensors: dict[str, torch.Tensor] = {}
    skeleton = state_io.split(captured, "rng", tensors)
    _, restored = state_io.deserialize(state_io.serialize(tensors, skeleton))
    first = (random.random(), np.random.rand(), torch.rand(3))
    state_io.restore_rng(restored)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])
