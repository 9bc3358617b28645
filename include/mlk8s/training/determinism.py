"""What makes a run repeatable to the bit: the device, deterministic kernels, seeded RNGs, and a data order
that is a function of (seed, epoch) alone, so a resumed process recomputes it instead of storing it."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

from mlk8s.training.task import TaskUsageError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TaskUsageError("--device", "cuda was asked for but torch sees no GPU; use --device auto or cpu")
    return torch.device(name)


def make_deterministic(threads: int, device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a function of (seed, epoch) only, so a resumed process gets the same."""
    import numpy as np
    import torch

    gen = torch.Generator()
    gen.manual_seed(int(np.random.SeedSequence([seed % 2**63, epoch, 0xDA7A]).generate_state(1, np.uint64)[0] >> 1))
    return torch.randperm(n, generator=gen)
