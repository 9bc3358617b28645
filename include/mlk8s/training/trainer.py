"""The training loop that survives being killed: periodic and emergency checkpoints, exact resume.

Exactness comes from three rules. The data order of epoch ``e`` is a permutation drawn from its own generator
seeded by (seed, e), so a resumed process recomputes it and continues at the saved batch position, never
replaying or skipping a batch. Every RNG a step may touch, and the optimizer, scheduler and AMP scaler, are
saved at a step boundary and restored after the model is built (building consumes RNG). Deterministic torch
kernels and a fixed thread count make the arithmetic itself repeatable.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlk8s.checkpoint import CheckpointStore, sha256
from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK
from mlk8s.storage import Location, resolve, write_atomic
from mlk8s.training import state as state_io
from mlk8s.training.checkpointing import Checkpointer
from mlk8s.training.config import TrainConfig
from mlk8s.training.determinism import epoch_permutation, make_deterministic, resolve_device, seed_everything
from mlk8s.training.signals import StopSignal
from mlk8s.training.task import TaskContext, TaskUsageError, TrainingTask

if TYPE_CHECKING:
    import torch

log = logging.getLogger("mlk8s.training")

MODEL_FILE = "model.safetensors"
MODEL_INFO_FILE = "model.json"


@dataclass
class Outcome:
    exit_code: int
    result: dict[str, Any]


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
    store: CheckpointStore
    output: Location


class Trainer:
    """Runs one process's share of a training job against a checkpoint store."""

    config: TrainConfig
    task_cls: type[TrainingTask]
    stop: StopSignal
    prepared: Prepared | None
    checkpointer: Checkpointer | None
    #: Relaunches so far, steps redone because of them, and the step this process started from.
    resumes: int
    work_lost_steps: int
    resumed_from_step: int
    #: Wall and step-thread CPU seconds of the step loop alone, and the samples it trained on (for benchmarks).
    loop_seconds: float
    loop_cpu_seconds: float
    loop_samples: int

    def __init__(self, config: TrainConfig, task_cls: type[TrainingTask], stop: StopSignal | None = None) -> None:
        self.config = config
        self.task_cls = task_cls
        self._owns_stop = stop is None
        self.stop = stop or StopSignal()
        self.prepared = None
        self.checkpointer = None
        self.resumes = 0
        self.work_lost_steps = 0
        self.resumed_from_step = 0
        self.loop_seconds = 0.0
        self.loop_cpu_seconds = 0.0
        self.loop_samples = 0

    # -- setup ---------------------------------------------------------------------------------------------

    def prepare(self) -> Prepared:
        """Everything that can fail on bad input, done before any training or store mutation."""
        import torch

        cfg = self.config
        device = resolve_device(cfg.device)
        make_deterministic(cfg.threads, device)
        context = TaskContext(cfg.data, cfg.seed, cfg.lr, cfg.batch_size, cfg.epochs, device, cfg.task_options)
        task = self.task_cls(context)
        task.setup()
        n = task.train_size()
        if n < 1:
            raise TaskUsageError("--data", "the task has no training examples")
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        seed_everything(cfg.seed)
        model = task.build_model().to(device)
        optimizer = task.build_optimizer(model)
        amp_dtype: torch.dtype | None = None
        scaler: Any = None
        if cfg.amp:
            amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
            if device.type == "cuda":
                scaler = torch.amp.GradScaler("cuda")
        self.prepared = Prepared(
            device=device,
            task=task,
            model=model,
            optimizer=optimizer,
            scheduler=task.build_scheduler(optimizer, total_steps),
            scaler=scaler,
            amp_dtype=amp_dtype,
            train_size=n,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            store=CheckpointStore(cfg.checkpoint_uri, keep_last=cfg.keep_last),
            output=resolve(cfg.output_uri),
        )
        return self.prepared

    def _ready(self) -> tuple[Prepared, Checkpointer]:
        assert self.prepared is not None and self.checkpointer is not None, "prepare() and run() come first"
        return self.prepared, self.checkpointer

    # -- checkpoint state ----------------------------------------------------------------------------------

    def _checkpoint(self, step: int, epoch: int, position: int, *, background: bool = True) -> None:
        p, ckpt = self._ready()
        rest: dict[str, Any] = {
            "optimizer": p.optimizer.state_dict(),
            "rng": state_io.capture_rng(),
            "progress": {"step": step, "epoch": epoch, "batch_in_epoch": position},
            "run": {
                "fingerprint": self.config.fingerprint(),
                "resumes": self.resumes,
                "work_lost_steps": self.work_lost_steps,
                "threads": self.config.threads,
            },
        }
        if p.scheduler is not None:
            rest["scheduler"] = p.scheduler.state_dict()
        if p.scaler is not None:
            rest["scaler"] = p.scaler.state_dict()
        meta = {"epoch": epoch, "batch_in_epoch": position, "total_steps": p.total_steps}
        ckpt.checkpoint(step, epoch, p.model.state_dict(), rest, meta, background=background)

    def _restore(self, files: dict[str, bytes]) -> dict[str, Any]:
        p, _ = self._ready()
        model_state, rest = state_io.deserialize(files)
        problem = self.config.mismatch(rest["run"]["fingerprint"])
        if problem is not None:
            raise problem
        p.model.load_state_dict(model_state)
        p.optimizer.load_state_dict(rest["optimizer"])
        if p.scheduler is not None and "scheduler" in rest:
            p.scheduler.load_state_dict(rest["scheduler"])
        if p.scaler is not None and "scaler" in rest:
            p.scaler.load_state_dict(rest["scaler"])
        state_io.restore_rng(rest["rng"])
        return rest

    # -- the run -------------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Resume (or start), train to the end or to a stop request, and report the outcome."""
        p = self.prepared if self.prepared is not None else self.prepare()
        previous = self.stop.install() if self._owns_stop else {}
        self.checkpointer = Checkpointer(p.store)
        try:
            return self._run()
        finally:
            StopSignal.uninstall(previous)
            self.checkpointer.close()

    def _resume(self) -> tuple[int, int, int]:
        """Restore the newest checkpoint, if any; (step, epoch, position) to continue from."""
        p, ckpt = self._ready()
        store = p.store
        progress = {g: h for g, h in store.read_progress().items() if g < (store.generation or 0)}
        checkpoint = store.load_latest()
        step = epoch = position = 0
        if checkpoint is not None:
            rest = self._restore(checkpoint.files)
            step = rest["progress"]["step"]
            epoch = rest["progress"]["epoch"]
            position = rest["progress"]["batch_in_epoch"]
            self.resumes = rest["run"]["resumes"]
            self.work_lost_steps = rest["run"]["work_lost_steps"]
            ckpt.resumed_from(checkpoint.info, step)
            if rest["run"].get("threads") != self.config.threads:
                log.warning(
                    "mlk8s: --threads is %d but the checkpoint was written with %s; results may differ in the "
                    "last bits from an uninterrupted run",
                    self.config.threads,
                    rest["run"].get("threads"),
                )
        if progress:
            # The previous process's heartbeat says how far it got; its record also carries the running totals,
            # which a checkpoint misses when a process died before committing anything.
            last = progress[max(progress)]
            lost = max(0, int(last.get("step", 0)) - step)
            self.resumes = max(self.resumes, int(last.get("resumes", 0))) + 1
            self.work_lost_steps = max(self.work_lost_steps, int(last.get("work_lost_steps", 0))) + lost
            log.info("mlk8s: resumed from step=%d work_lost_steps=%d", step, lost)
            log.info(
                "mlk8s: resume details: epoch=%d batch_in_epoch=%d resumes=%d total_work_lost_steps=%d checkpoint=%s",
                epoch,
                position,
                self.resumes,
                self.work_lost_steps,
                checkpoint.info.uri if checkpoint else None,
            )
        return step, epoch, position

    def _run(self) -> Outcome:
        p, _ = self._ready()
        p.store.claim_generation()
        step, epoch, position = self._resume()
        self.resumed_from_step = step
        self._heartbeat(step, epoch, sync=True)
        log.info(
            "mlk8s: training started step=%d total_steps=%d epochs=%d steps_per_epoch=%d device=%s generation=%d",
            step,
            p.total_steps,
            self.config.epochs,
            p.steps_per_epoch,
            p.device,
            p.store.generation,
        )
        started, cpu_started = time.perf_counter(), time.thread_time()
        status = self._train(step, epoch, position)
        self.loop_seconds = time.perf_counter() - started
        self.loop_cpu_seconds = time.thread_time() - cpu_started
        if status is not None:
            return status
        return self._finish()

    def _heartbeat(self, step: int, epoch: int, *, sync: bool = False) -> None:
        _, ckpt = self._ready()
        body = {
            "step": step,
            "epoch": epoch,
            "resumed_from_step": self.resumed_from_step,
            "resumes": self.resumes,
            "work_lost_steps": self.work_lost_steps,
            "updated_at": time.time(),
        }
        ckpt.heartbeat(body, sync=sync)

    def _train(self, step: int, epoch: int, position: int) -> Outcome | None:
        import torch

        cfg = self.config
        p, ckpt = self._ready()
        model, optimizer, scheduler, scaler, task = p.model, p.optimizer, p.scheduler, p.scaler, p.task
        bs = cfg.batch_size
        model.train()
        first_step = step + 1
        self.loop_samples = 0
        ckpt.last_commit_time = time.monotonic()
        running_loss = torch.zeros((), device=p.device)
        window_steps = 0
        window_samples = 0
        window_start = time.perf_counter()
        autocast = torch.autocast(p.device.type, dtype=p.amp_dtype) if p.amp_dtype is not None else None
        while epoch < cfg.epochs:
            order = epoch_permutation(cfg.seed, epoch, p.train_size)
            while position < p.steps_per_epoch:
                if self.stop.at is not None:
                    return self._interrupted(step, epoch, position)
                indices = order[position * bs : (position + 1) * bs]
                batch = task.get_batch(indices)
                optimizer.zero_grad(set_to_none=True)
                if autocast is not None:
                    with autocast:
                        loss = task.training_step(model, batch)
                else:
                    loss = task.training_step(model, batch)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                position += 1
                self.loop_samples += len(indices)
                if step == first_step:
                    log.info("mlk8s: first step done step=%d", step)
                running_loss += loss.detach().float()
                window_steps += 1
                window_samples += len(indices)
                epoch_end = position == p.steps_per_epoch
                if epoch_end:
                    epoch += 1
                    position = 0
                if epoch_end or (cfg.log_every_steps and step % cfg.log_every_steps == 0):
                    now = time.perf_counter()
                    log.info(
                        "mlk8s: progress epoch=%d/%d step=%d/%d loss=%.4f samples_per_s=%.0f since_checkpoint_s=%.1f",
                        epoch,
                        cfg.epochs,
                        step,
                        p.total_steps,
                        running_loss.item() / window_steps,
                        window_samples / max(now - window_start, 1e-9),
                        time.monotonic() - ckpt.last_commit_time,
                    )
                    running_loss.zero_()
                    window_steps = window_samples = 0
                    window_start = now
                due = (cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0) or (
                    epoch_end and cfg.checkpoint_every_epochs and epoch % cfg.checkpoint_every_epochs == 0
                )
                if due:
                    self._checkpoint(step, epoch, position)
                else:
                    ckpt.writer.check()
                if time.monotonic() - ckpt.last_heartbeat >= cfg.heartbeat_seconds:
                    self._heartbeat(step, epoch)
                if epoch_end:
                    break
        if self.stop.at is not None:
            log.info("mlk8s: stop requested after the last step; finishing normally")
        return None

    def _interrupted(self, step: int, epoch: int, position: int) -> Outcome:
        assert self.stop.at is not None
        _, ckpt = self._ready()
        left = self.config.termination_grace_seconds - (time.monotonic() - self.stop.at)
        log.info("mlk8s: SIGTERM received; stopping at step=%d with %.1fs of grace left", step, left)
        emergency = False
        if ckpt.submitted_step == step or step == self.resumed_from_step:
            # Already saved (or in flight), or nothing done since start: the last checkpoint, or the seed for
            # a fresh run, reproduces this exact state.
            ckpt.writer.wait()
        else:
            fits, needed = ckpt.emergency_fits(left)
            if fits:
                self._checkpoint(step, epoch, position, background=False)
                emergency = True
            else:
                log.warning(
                    "mlk8s: emergency checkpoint skipped: it needs ~%.1fs but %.1fs of grace is left; the last "
                    "committed checkpoint stands",
                    needed,
                    left,
                )
                ckpt.writer.wait()
        self._heartbeat(step, epoch, sync=True)
        committed = ckpt.last_committed
        log.info(
            "mlk8s: interrupted step=%d emergency_checkpoint=%s last_checkpoint_step=%s",
            step,
            str(emergency).lower(),
            committed.step if committed else None,
        )
        return Outcome(
            EXIT_INTERRUPTED,
            {
                "status": "interrupted",
                "checkpoint_uri": committed.uri if committed else None,
                "checkpoint_step": committed.step if committed else None,
                "steps": step,
                "emergency_checkpoint": emergency,
                "resumes": self.resumes,
                "work_lost_steps": self.work_lost_steps,
            },
        )

    def _finish(self) -> Outcome:
        import torch
        from safetensors.torch import save

        p, ckpt = self._ready()
        ckpt.writer.wait()
        p.model.eval()
        with torch.no_grad():
            metrics = {k: _json_float(v) for k, v in p.task.evaluate(p.model).items()}
        weights = save({k: v.detach().to("cpu").contiguous() for k, v in p.model.state_dict().items()})
        digest = sha256(weights)
        p.output.fs.create_dir(p.output.path, recursive=True)
        model_loc = p.output.child(MODEL_FILE)
        write_atomic(model_loc, weights)
        committed = ckpt.last_committed
        info = {
            "model_uri": model_loc.uri,
            "weights_sha256": digest,
            "checkpoint_uri": committed.uri if committed else None,
            "metrics": metrics,
            "steps": p.total_steps,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "resumes": self.resumes,
            "work_lost_steps": self.work_lost_steps,
            "task": self.config.task,
            "task_info": p.task.describe(),
            "device": str(p.device),
        }
        # model.json is written last: its presence means model.safetensors beside it is complete.
        write_atomic(p.output.child(MODEL_INFO_FILE), json.dumps(info, sort_keys=True, indent=2).encode())
        log.info(
            "mlk8s: training done steps=%d resumes=%d work_lost_steps=%d metrics=%s model=%s",
            p.total_steps,
            self.resumes,
            self.work_lost_steps,
            json.dumps(metrics, sort_keys=True),
            model_loc.uri,
        )
        result = {"status": "done", "output_uri": p.output.uri, **info}
        result.pop("task_info")
        return Outcome(EXIT_OK, result)


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
