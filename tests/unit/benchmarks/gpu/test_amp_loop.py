"""The AMP comparison, tiny and on CPU (bfloat16 autocast, as the trainer does there): both sides train the same
samples and report a finite speed. No timing assertion: the figure itself is for a GPU (benchmarks/gpu/run.sh)."""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.gpu.amp_loop import GPU_SIZE, Size, compare, trainer_argv

TINY = Size("cpu", hidden=16, layers=1, batch_size=2048, epochs=1, pairs=1, warmup=False)


@pytest.fixture(autouse=True)
def _restore_process_globals() -> Iterator[None]:
    """The trainer sets torch's determinism and threads, signal handlers and root logging process-wide."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    root.handlers[:] = root_handlers
    root.setLevel(root_level)


def test_both_sides_train_the_same_samples_at_a_finite_speed(tmp_path: Path) -> None:
    report = compare(TINY, root=tmp_path)
    assert report["same_samples"] is True
    assert report["samples_per_run"] == 7190  # the digits' training rows with the shifted copies, one epoch
    assert report["steps_per_run"] == 4
    for key in ("measured_ours_samples_per_s", "baseline_hand_written_samples_per_s", "ratio"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    assert report["amp"] == "bfloat16 autocast, no scaler"
    assert "best-of-N" in report["rule"]
    assert list(tmp_path.iterdir()) == []  # every run's checkpoints and model are removed


def test_our_side_is_the_cli_with_amp_and_checkpoints_off(tmp_path: Path) -> None:
    from mlk8s.training.config import parse_config

    cfg = parse_config(trainer_argv(tmp_path, GPU_SIZE))
    assert cfg.amp is True and cfg.device == "cuda"
    assert cfg.checkpoint_every_steps == 0 and cfg.checkpoint_every_epochs == 0
    assert cfg.task_options == {"hidden": "8192", "layers": "4"}
    assert GPU_SIZE.parameters > 100_000_000  # big enough that the GPU, not Python, is the cost
