"""Snapshot images: the bytes of a ``state.safetensors`` file, laid out once in preallocated host memory and reused,
so taking a snapshot is one copy per tensor into its slot and the writer hashes and writes the image as it is.

Why not ``safetensors.torch.save``: it allocates every tensor anew and then joins them into one more copy, on the
step thread; for a model of hundreds of MB the fresh allocations alone (page faults) cost seconds. An image is
allocated and touched once per layout (tensor names, dtypes, shapes), pinned when CUDA is present so a device
copy goes straight into it, and lives in a :class:`SnapshotPool` of at most two: one being written, one being
filled. The format is the safetensors one (an 8-byte little-endian header length, a JSON header padded to 8
bytes, the raw bytes); tensors are placed largest element first, so every tensor starts aligned to its element
size and the slots can be viewed as typed tensors. Files are read back with the official loader.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: torch dtype name -> safetensors dtype tag; other dtypes are not imaged (the caller falls back to a plain save).
SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}

Layout = tuple[tuple[str, str, tuple[int, ...]], ...]


def layout_of(tensors: Mapping[str, torch.Tensor]) -> Layout | None:
    """The image layout for these tensors (largest element first, then by name), or None if one cannot be imaged."""
    entries = []
    for name, t in tensors.items():
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in SAFETENSORS_DTYPES:
            return None
        entries.append((name, dtype, tuple(t.shape), t.element_size()))
    entries.sort(key=lambda e: (-e[3], e[0]))
    return tuple((name, dtype, shape) for name, dtype, shape, _ in entries)


class SnapshotImage:
    """One preallocated safetensors file image with a typed view per tensor slot."""

    def __init__(self, layout: Layout, *, pin: bool) -> None:
        import torch

        header: dict[str, Any] = {}
        offset = 0
        sizes = []
        for name, dtype, shape in layout:
            numel = 1
            for dim in shape:
                numel *= dim
            size = numel * getattr(torch, dtype).itemsize
            tag = SAFETENSORS_DTYPES[dtype]
            header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + size]}
            sizes.append(size)
            offset += size
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        start = 8 + len(head)
        self.layout = layout
        self.nbytes = start + offset
        self.buffer = torch.empty(self.nbytes, dtype=torch.uint8, pin_memory=pin)
        self.buffer.zero_()  # touch every page now, not on the first snapshot
        self.buffer[:start] = torch.frombuffer(bytearray(len(head).to_bytes(8, "little") + head), dtype=torch.uint8)
        self.views: dict[str, torch.Tensor] = {}
        at = start
        for (name, dtype, shape), size in zip(layout, sizes, strict=True):
            self.views[name] = self.buffer[at : at + size].view(getattr(torch, dtype)).view(shape)
            at += size

    def fill(self, tensors: Mapping[str, torch.Tensor], names: Iterable[str] | None = None) -> None:
        """Copy the tensors (all, or those ``names``) into their slots, from any device; returns when done."""
        for name in self.views if names is None else names:
            self.views[name].copy_(tensors[name].detach())

    def data(self) -> memoryview:
        """The file's bytes, without a copy."""
        return self.buffer.numpy().data


class SnapshotPool:
    """At most ``slots`` images; :meth:`acquire` waits (and counts the wait) when all are being written."""

    def __init__(self, slots: int = 2) -> None:
        self._cond = threading.Condition()
        self._free: list[SnapshotImage] = []
        self._count = 0
        self.slots = slots
        #: Seconds :meth:`acquire` waited for an image to come back from the writer.
        self.wait_seconds = 0.0

    def acquire(self, layout: Layout, *, pin: bool) -> SnapshotImage:
        with self._cond:
            started = time.perf_counter()
            while True:
                match = next((i for i in self._free if i.layout == layout), None)
                if match is not None:
                    self._free.remove(match)
                    self.wait_seconds += time.perf_counter() - started
                    return match
                if self._free:  # an image of an old layout (the optimizer state appeared): drop it
                    self._free.pop()
                    self._count -= 1
                if self._count < self.slots:
                    self._count += 1
                    break
                self._cond.wait()
            self.wait_seconds += time.perf_counter() - started
        try:
            return SnapshotImage(layout, pin=pin)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            raise

    def prepare(self, layout: Layout, *, pin: bool) -> None:
        """Allocate (and touch) an image for ``layout`` ahead of need: call it off the step thread."""
        self.release(self.acquire(layout, pin=pin))

    def release(self, image: SnapshotImage) -> None:
        with self._cond:
            self._free.append(image)
            self._cond.notify_all()
