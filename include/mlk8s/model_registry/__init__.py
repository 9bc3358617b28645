"""The model registry: which trained model is live, and whether a new one may replace it.

A registry is a directory (a path or pyarrow.fs URI) laid out as::

    <registry>/candidates/<run_key>/model.safetensors, model.json   what a training run wrote
    <registry>/history/<published_at>-<sha>.json                     one entry per publication
    <registry>/published.json                                        the live model (written atomically, last)

``python -m mlk8s.model_registry evaluate`` scores a candidate and the published model on the same held-out
rows and decides; ``publish`` moves the pointer (compare-and-swap against what was evaluated); ``show``
prints it.
"""

from __future__ import annotations

from mlk8s.model_registry.published import PublishedModel, Registry, RegistryError
from mlk8s.model_registry.verdict import Goal, Verdict, decide

__all__ = ["Goal", "PublishedModel", "Registry", "RegistryError", "Verdict", "decide"]
