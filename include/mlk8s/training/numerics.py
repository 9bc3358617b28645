"""Non-finite numbers stop a run: a NaN or infinite loss or weight is never checkpointed nor published.

Checked where the trainer syncs anyway (progress lines, checkpoints, the end), on a loss sum that a NaN or an
infinity anywhere in the window poisons, so the step loop itself never waits on the device for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class NonFiniteError(ArithmeticError):
    """Training produced a NaN or an infinity; the run must stop without committing it."""


def non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity."""
    import torch

    return [name for name, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]
