"""Snapshot images are safetensors files the official loader reads, reused across snapshots, at most two."""

from __future__ import annotations

import threading
import time

import pytest

from mlk8s.checkpoint.snapshot import SnapshotImage, SnapshotPool, layout_of


def tensors() -> dict:
    import torch

    return {
        "f32": torch.randn(3, 4),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "i64": torch.arange(5),
        "bf16": torch.randn(7).bfloat16(),
        "f16": torch.randn(3).half(),  # odd-sized 2-byte tensors before 1-byte ones: alignment by element size
        "bool": torch.tensor([True, False, True]),
        "u8": torch.randint(0, 255, (9,), dtype=torch.uint8),
        "f64": torch.randn(2, dtype=torch.float64),
    }


def test_an_image_is_a_safetensors_file_of_the_tensors() -> None:
    import torch
    from safetensors.torch import load

    state = tensors()
    layout = layout_of(state)
    assert layout is not None
    image = SnapshotImage(layout, pin=False)
    image.fill(state)
    loaded = load(bytes(image.data()))
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    state["f32"].add_(1.0)  # the image is a copy: later changes do not reach it
    assert not torch.equal(load(bytes(image.data()))["f32"], state["f32"])


def test_layouts_refuse_what_safetensors_images_cannot_hold() -> None:
    import torch

    assert layout_of({"c": torch.zeros(2, dtype=torch.complex64)}) is None


def test_the_pool_reuses_images_and_waits_when_both_are_out() -> None:
    layout = layout_of(tensors())
    assert layout is not None
    pool = SnapshotPool(slots=2)
    first = pool.acquire(layout, pin=False)
    second = pool.acquire(layout, pin=False)
    assert first is not second
    got: list[SnapshotImage] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(layout, pin=False)))
    waiter.start()
    time.sleep(0.2)
    assert not got, "a third image was allocated: memory would grow with a slow store"
    pool.release(first)
    waiter.join(timeout=5)
    assert got == [first] and pool.wait_seconds >= 0.1


def test_an_image_of_an_old_layout_is_replaced() -> None:
    import torch

    pool = SnapshotPool(slots=1)
    old = layout_of({"a": torch.zeros(2)})
    new = layout_of({"a": torch.zeros(2), "b": torch.zeros(3)})
    assert old is not None and new is not None
    pool.release(pool.acquire(old, pin=False))
    image = pool.acquire(new, pin=False)
    assert image.layout == new


@pytest.mark.parametrize("slots", [1])
def test_prepare_allocates_ahead(slots: int) -> None:
    layout = layout_of(tensors())
    assert layout is not None
    pool = SnapshotPool(slots=slots)
    pool.prepare(layout, pin=False)
    started = time.perf_counter()
    image = pool.acquire(layout, pin=False)
    assert image.layout == layout and time.perf_counter() - started < 1
