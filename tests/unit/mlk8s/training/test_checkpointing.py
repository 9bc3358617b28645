"""The trainer's checkpoints: what is committed is the state at the step boundary, even though the copy of the
parameters overlaps the next step; non-finite weights are never committed; the step thread's time is counted."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mlk8s.checkpoint import CheckpointStore
from mlk8s.training import state as state_io
from mlk8s.training.checkpointing import Checkpointer
from mlk8s.training.history import History
from mlk8s.training.numerics import NonFiniteError


def setup(tmp_path: Path, store: CheckpointStore | None = None) -> tuple[Checkpointer, object, object]:
    import torch

    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 64)).sum().backward()
    optimizer.step()
    store = store or CheckpointStore(str(tmp_path / "ckpt"))
    store.claim_generation()
    params = frozenset(f"model.{n}" for n, _ in model.named_parameters())
    return Checkpointer(store, History(), params), model, optimizer


def checkpoint(ckpt: Checkpointer, model: object, optimizer: object, step: int, **kwargs: object) -> None:
    rest = {"optimizer": optimizer.state_dict(), "rng": state_io.capture_rng(), "run": {"step": step}}  # type: ignore[attr-defined]
    ckpt.checkpoint(step, 0, model.state_dict(), rest, {"epoch": 0}, **kwargs)  # type: ignore[attr-defined, arg-type]


def test_the_committed_state_is_the_one_at_the_step_boundary(tmp_path: Path) -> None:
    import torch

    ckpt, model, optimizer = setup(tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"].clone()  # type: ignore[attr-defined]
    checkpoint(ckpt, model, optimizer, 1)
    model(torch.randn(4, 64)).sum().backward()  # the next step's forward and backward overlap the copy
    ckpt.before_update()
    optimizer.step()  # type: ignore[attr-defined]
    ckpt.writer.wait()
    ckpt.close()
    loaded = CheckpointStore(str(tmp_path / "ckpt")).load_latest()
    assert loaded is not None
    model_state, rest = state_io.deserialize(loaded.files)
    assert all(torch.equal(model_state[k], v) for k, v in before.items())
    assert torch.equal(rest["optimizer"]["state"][0]["exp_avg"], exp_avg)
    assert rest["run"] == {"step": 1}
    assert not torch.equal(model.weight, before["weight"])  # type: ignore[attr-defined]


def test_non_finite_weights_are_not_committed(tmp_path: Path) -> None:
    import torch

    ckpt, model, optimizer = setup(tmp_path)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")  # type: ignore[attr-defined]
    checkpoint(ckpt, model, optimizer, 3)
    with pytest.raises(NonFiniteError, match=r"step 3 hold NaN or infinity \(in model.weight\)"):
        ckpt.writer.wait()
    ckpt.close()
    assert CheckpointStore(str(tmp_path / "ckpt")).list_checkpoints() == []


class SlowStore(CheckpointStore):
    """A store whose commits wait for a gate: storage slower than the checkpoint interval."""

    gate = threading.Event()

    def commit(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        self.gate.wait(30)
        return super().commit(*args, **kwargs)  # type: ignore[arg-type]


def test_with_both_images_out_the_step_waits_and_the_wait_is_counted(tmp_path: Path) -> None:
    ckpt, model, optimizer = setup(tmp_path, SlowStore(str(tmp_path / "ckpt")))
    SlowStore.gate.clear()
    checkpoint(ckpt, model, optimizer, 1)  # being written (held by the gate)
    checkpoint(ckpt, model, optimizer, 2)  # waiting in line
    third = threading.Thread(target=checkpoint, args=(ckpt, model, optimizer, 3))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third snapshot image was allocated: memory would grow with a slow store"
    SlowStore.gate.set()
    third.join(30)
    ckpt.writer.wait()
    assert ckpt.committed == 3 and ckpt.pool.wait_seconds >= 0.25 and ckpt.step_thread_seconds >= 0.25
    ckpt.close()


def test_a_synchronous_checkpoint_is_committed_when_it_returns(tmp_path: Path) -> None:
    ckpt, model, optimizer = setup(tmp_path)
    checkpoint(ckpt, model, optimizer, 7, background=False)
    assert ckpt.last_committed is not None and ckpt.last_committed.step == 7
    assert ckpt.bytes_written > 0 and len(ckpt.commit_seconds) == 1
    ckpt.close()
