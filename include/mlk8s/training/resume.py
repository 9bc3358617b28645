"""Which checkpoint a relaunch continues from, and whether it fits this run: the same flags, the same data, the
same number of steps. Anything else is refused with a usage error saying what changed, before any training.

A checkpoint whose files verify but whose state cannot be decoded (written by other code, damaged before its
checksums were taken) is skipped like a corrupt one: the next older one is tried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlk8s.checkpoint import Checkpoint, CheckpointStore
from mlk8s.training import state as state_io
from mlk8s.training.config import TrainConfig
from mlk8s.training.history import History
from mlk8s.training.task import TaskUsageError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("mlk8s.training")

#: The order in which changes are reported: what a person recognises first.
_DATA_KEYS = ("kind", "uri", "partition", "version", "rows", "train_size", "content_sha256")


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Checkpoint
    model_state: dict[str, torch.Tensor]
    rest: dict[str, Any]
    history: History

    @property
    def step(self) -> int:
        return int(self.rest["progress"]["step"])

    @property
    def run(self) -> dict[str, Any]:
        run = self.rest["run"]
        assert isinstance(run, dict)
        return run

    @property
    def data(self) -> dict[str, Any] | None:
        data = self.run.get("data")
        return data if isinstance(data, dict) else None


def _check_structure(rest: Any) -> None:
    """Raises ValueError unless ``rest`` has what a resume reads (checkpoints of other code fall back)."""
    if not isinstance(rest, dict):
        raise ValueError("the state is not an object")
    progress, run = rest.get("progress"), rest.get("run")
    if not isinstance(progress, dict) or not isinstance(progress.get("step"), int) or progress["step"] < 0:
        raise ValueError("no valid progress.step")
    if not isinstance(run, dict) or not isinstance(run.get("fingerprint"), dict):
        raise ValueError("no run.fingerprint")
    for key in ("resumes", "work_lost_steps"):
        if not isinstance(run.get(key), int):
            raise ValueError(f"no run.{key}")
    if not isinstance(rest.get("optimizer"), dict) or not isinstance(rest.get("rng"), dict):
        raise ValueError("no optimizer or RNG state")


def find_resume_point(store: CheckpointStore, config: TrainConfig, device: Any) -> ResumePoint | None:
    """The newest checkpoint that verifies and decodes; raises a usage error if it was written with other flags."""
    for checkpoint in store.resume_candidates():
        try:
            model_state, rest = state_io.deserialize(checkpoint.files)
            _check_structure(rest)
            recorded = rest["run"].get("history")
            history = History.from_state(recorded, device) if recorded is not None else History()
        except Exception as exc:  # decoding bytes from storage: any failure means "not usable", never a crash
            log.warning(
                "mlk8s: skipping checkpoint %s: its state cannot be decoded (%s); falling back to an older one",
                checkpoint.info.uri,
                " ".join(str(exc).split()) or type(exc).__name__,
            )
            continue
        problem = config.mismatch(rest["run"]["fingerprint"])
        if problem is not None:
            raise problem
        return ResumePoint(checkpoint, model_state, rest, history)
    return None


def data_version_to_read(config: TrainConfig, resume: ResumePoint | None) -> int | None:
    """The Delta version to read: the one the checkpoint trained on, else ``--data-version``, else the latest."""
    recorded = resume.data.get("version") if resume is not None and resume.data is not None else None
    if recorded is None:
        return config.data_version
    if config.data_version is not None and config.data_version != recorded:
        raise TaskUsageError(
            "--data-version",
            f"is {config.data_version} but the checkpoints were trained on version {recorded}; drop --data-version "
            "to resume on that version, or use a new --checkpoint-uri",
        )
    return int(recorded)


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12]  # a content hash: its start is enough to see it differs
    return repr(value)


def data_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between the data a checkpoint trained on and the data read now ("rows 1437 -> 1200")."""
    keys = [k for k in _DATA_KEYS if k in recorded or k in current]
    keys += sorted((set(recorded) | set(current)) - set(_DATA_KEYS))
    return [
        f"{k} {_show(recorded.get(k))} -> {_show(current.get(k))}" for k in keys if recorded.get(k) != current.get(k)
    ]


def check_fits(resume: ResumePoint, data: Mapping[str, Any], total_steps: int, store_uri: str) -> None:
    """Refuse a resume on other data, or one whose step count no longer matches the checkpoint's."""
    recorded = resume.data
    changes = data_changes(recorded, data) if recorded is not None else []
    recorded_total = resume.checkpoint.meta.get("total_steps")
    if not changes and isinstance(recorded_total, int) and recorded_total != total_steps:
        changes = [f"total steps {recorded_total} -> {total_steps}"]
    if not changes and resume.step > total_steps:
        changes = [f"the checkpoint is at step {resume.step}, past the {total_steps} steps of this run"]
    if changes:
        raise TaskUsageError(
            "--data",
            f"differs from the data the checkpoints under {store_uri} were trained on: {'; '.join(changes)}. "
            "Restore that data (a Delta table resumes on its recorded version by itself), or start over with a new "
            "--checkpoint-uri",
        )


def restore(resume: ResumePoint, model: Any, optimizer: Any, scheduler: Any, scaler: Any, threads: int) -> None:
    """Load the checkpoint's state into freshly built objects; the RNGs last (building consumed them)."""
    try:
        model.load_state_dict(resume.model_state)
        optimizer.load_state_dict(resume.rest["optimizer"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise TaskUsageError(
            "--task",
            f"the model or optimizer the task builds does not fit checkpoint {resume.checkpoint.info.uri} "
            f"({' '.join(str(exc).split())[:300]}); use the code it was written with, or a new --checkpoint-uri",
        ) from exc
    if scheduler is not None and "scheduler" in resume.rest:
        scheduler.load_state_dict(resume.rest["scheduler"])
    if scaler is not None and "scaler" in resume.rest:
        scaler.load_state_dict(resume.rest["scaler"])
    state_io.restore_rng(resume.rest["rng"])
    if resume.run.get("threads") != threads:
        log.warning(
            "mlk8s: --threads is %d but the checkpoint was written with %s; results may differ in the last bits "
            "from an uninterrupted run",
            threads,
            resume.run.get("threads"),
        )
