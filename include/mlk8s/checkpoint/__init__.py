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

__all__ = [
    "MANIFEST",
    "BackgroundWriter",
    "Checkpoint",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointStore",
    "FencedError",
    "checkpoint_name",
    "sha256",
]
