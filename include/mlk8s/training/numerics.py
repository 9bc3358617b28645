"""Non-finite numbers stop a run: a NaN or infinite loss or weight is never checkpointed nor published.

Checked where the trainer syncs anyway (progress lines, checkpoints, the end), on a loss sum that a NaN or an
infinity anywhere in the window poisons, so the step loop itself never waits on the device for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class NonFiniteError(ArithmeticError):
    """Training produced a NaN or an infinity; the run must stop without committing it."""


def non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity.

    One reduction per tensor: its minimum and maximum are finite exactly when every element is (a NaN propagates
    through both, an infinity is one of them). That is a sixth of the cost of ``isfinite(t).all()``, which first
    writes a boolean tensor as large as ``t``; the checkpoint writer runs it on every parameter of every save.
    """
    import torch

    bad = []
    for name, t in named:
        if not t.is_floating_point() or t.numel() == 0:
            continue
        low, high = torch.aminmax(t.detach())
        if not (math.isfinite(low.item()) and math.isfinite(high.item())):
            bad.append(name)
    return bad
