"""Everything a run needs, built from the config before any store mutation: the device, the checkpoint store and
the checkpoint to resume from, the task and its data, the model, optimizer, scheduler and AMP scaler.

Every check that can fail on bad input runs here, so a refused run has written nothing. The checkpoint to resume
from is read before the task reads its data: it says which version of a Delta table to read, and the data read
must be the data it was trained on (mlk8s.training.resume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlk8s.checkpoint import CheckpointStore
from mlk8s.storage import Location, resolve
from mlk8s.training.config import TrainConfig
from mlk8s.training.determinism import make_deterministic, resolve_device, seed_everything
from mlk8s.training.resume import ResumePoint, check_fits, data_version_to_read, find_resume_point, restore
from mlk8s.training.signals import StopSignal
from mlk8s.training.task import TaskContext, TaskUsageError, TrainingTask

if TYPE_CHECKING:
    import torch


@dataclass
class Prepared:
    """Everything :meth:`Trainer.prepare` builds from the config before any store mutation."""

    device: torch.device
    task: TrainingTask
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    amp_dtype: torch.dtype | None
    train_size: int
    steps_per_epoch: int
    total_steps: int
    #: What identifies the data read (the task's fingerprint plus the training-set size): kept in checkpoints.
    data: dict[str, Any]
    store: CheckpointStore
    output: Location
    resume: ResumePoint | None


def prepare(config: TrainConfig, task_cls: type[TrainingTask], stop: StopSignal) -> Prepared:
    """Build the run; raises TaskUsageError (naming the flag) for anything wrong with the input."""
    import torch

    cfg = config
    device = resolve_device(cfg.device)
    make_deterministic(cfg.threads, device)
    root = resolve(cfg.checkpoint_uri, timeout_s=cfg.storage_timeout_seconds)
    store = CheckpointStore(root, keep_last=cfg.keep_last, cancelled=lambda: stop.requested)
    resume = find_resume_point(store, cfg, device)
    context = TaskContext(
        cfg.data,
        cfg.seed,
        cfg.lr,
        cfg.batch_size,
        cfg.epochs,
        device,
        cfg.task_options,
        data_partition=cfg.data_partition,
        data_version=data_version_to_read(cfg, resume),
        storage_timeout_s=cfg.storage_timeout_seconds,
    )
    task = task_cls(context)
    task.setup()
    n = task.train_size()
    if n < 1:
        raise TaskUsageError("--data", "the task has no training examples")
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    data = {**task.data_fingerprint(), "train_size": n}
    if resume is not None:
        check_fits(resume, data, total_steps, store.uri)
    seed_everything(cfg.seed)
    model = task.build_model().to(device)
    optimizer = task.build_optimizer(model)
    scheduler = task.build_scheduler(optimizer, total_steps)
    amp_dtype: torch.dtype | None = None
    scaler: Any = None
    if cfg.amp:
        amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        if device.type == "cuda":
            scaler = torch.amp.GradScaler("cuda")
    if resume is not None:
        restore(resume, model, optimizer, scheduler, scaler, cfg.threads)
    return Prepared(
        device=device,
        task=task,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=amp_dtype,
        train_size=n,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        data=data,
        store=store,
        output=resolve(cfg.output_uri, timeout_s=cfg.storage_timeout_seconds),
        resume=resume,
    )
