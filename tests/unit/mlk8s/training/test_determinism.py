"""The data order is a function of (seed, epoch) alone; the device choice refuses a GPU that is not there."""

from __future__ import annotations

import pytest

from mlk8s.training.determinism import epoch_permutation, resolve_device
from mlk8s.training.task import TaskUsageError


def test_epoch_permutation_depends_only_on_seed_and_epoch() -> None:
    import torch

    a = epoch_permutation(3, 0, 100)
    assert torch.equal(a, epoch_permutation(3, 0, 100))
    assert torch.equal(torch.sort(a).values, torch.arange(100))
    assert not torch.equal(a, epoch_permutation(3, 1, 100))
    assert not torch.equal(a, epoch_permutation(4, 0, 100))


def test_cuda_without_a_gpu_names_the_flag() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(TaskUsageError, match="--device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
