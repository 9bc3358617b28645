"""A trained model as ``python -m mlk8s.training`` leaves it: ``model.json`` (read last-written-first) and
``model.safetensors``, whose checksum must match the one recorded in ``model.json``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, ValidationError

from mlk8s.storage import Location, UriError, read_bytes, resolve
from mlk8s.training.publish import MODEL_FILE, MODEL_INFO_FILE


class ModelFilesError(ValueError):
    """A model directory that cannot be used; the message names it and says what is wrong."""


class ModelInfo(BaseModel):
    """The fields of ``model.json`` the registry relies on; the trainer writes more, which are kept as they are."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    weights_sha256: str
    task: str
    seed: int
    metrics: dict[str, float | None] = {}
    task_info: dict[str, Any] = {}


@dataclass(frozen=True)
class ModelFiles:
    directory: Location
    info: ModelInfo
    weights: bytes

    @property
    def sha256(self) -> str:
        return self.info.weights_sha256


def read_model(uri: str, *, flag: str = "--candidate") -> ModelFiles:
    """Read and check a model directory; ``flag`` is named in the error (the CLI flag that gave the URI)."""
    try:
        directory = resolve(uri)
    except UriError as exc:
        raise ModelFilesError(f"{flag}: {exc}") from exc
    info_loc = directory.child(MODEL_INFO_FILE)
    if directory.fs.get_file_info(info_loc.path).type != pafs.FileType.File:
        raise ModelFilesError(
            f"{flag}: {uri} holds no {MODEL_INFO_FILE}: it is not a finished training output (the trainer writes "
            f"it last, after {MODEL_FILE})"
        )
    try:
        info = ModelInfo.model_validate(json.loads(read_bytes(info_loc)))
    except (ValueError, ValidationError) as exc:
        raise ModelFilesError(f"{flag}: {info_loc.uri} is not a valid {MODEL_INFO_FILE}: {exc}") from exc
    try:
        weights = read_bytes(directory.child(MODEL_FILE))
    except OSError as exc:
        raise ModelFilesError(f"{flag}: cannot read {MODEL_FILE} under {uri}: {exc}") from exc
    digest = hashlib.sha256(weights).hexdigest()
    if digest != info.weights_sha256:
        raise ModelFilesError(
            f"{flag}: {MODEL_FILE} under {uri} has sha256 {digest[:12]}..., but {MODEL_INFO_FILE} records "
            f"{info.weights_sha256[:12]}...: the weights were replaced or damaged after training; retrain"
        )
    return ModelFiles(directory, info, weights)
