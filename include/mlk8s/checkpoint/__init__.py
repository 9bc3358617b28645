"""Checkpoint storage for pods that may be killed at any moment: atomic commits, verification, fencing."""

from __future__ import annotations

from mlk8s.checkpoint.background import BackgroundWriter
from mlk8s.checkpoint.store import (
    MANIFEST,
    Checkpoint,
    CheckpointError,
    CheckpointInfo,
    CheckpointStore,
    FencedError,
    checkpoint_name,
    sha256,
)
from mlk8s.checkpoint.uri import Location, UriError, read_bytes, resolve, write_atomic

__all__ = [
    "MANIFEST",
    "BackgroundWriter",
    "Checkpoint",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointStore",
    "FencedError",
    "Location",
    "UriError",
    "checkpoint_name",
    "read_bytes",
    "resolve",
    "sha256",
    "write_atomic",
]
