"""The training loop that survives being killed: periodic and emergency checkpoints, exact resume.

Exactness comes from three rules. The data order of epoch ``e`` is a permutation drawn from its own generator
seeded by (seed, e), so a resumed process recomputes it and continues at the saved batch position, never
replaying or skipping a batch. Every RNG a step may touch, and the optimizer, scheduler and AMP scaler, are
saved at a step boundary and restored after the model is built (building consumes RNG). Deterministic torch
kernels and a fixed thread count make the arithmetic itself repeatable.

The loop runs by global step, ``0 <= step < total_steps``, the epoch and the position in it derived from the
step: it ends after the last step whatever a checkpoint held, and a checkpoint that does not fit the data read
now (another row count, content or version) is refused before it is used (mlk8s.training.resume).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK
from mlk8s.training import state as state_io
from mlk8s.training.checkpointing import Checkpointer
from mlk8s.training.config import TrainConfig
from mlk8s.training.determinism import epoch_permutation
from mlk8s.training.history import History
from mlk8s.training.numerics import NonFiniteError
from mlk8s.training.preparation import Prepared, prepare
from mlk8s.training.progress import ProgressLog
from mlk8s.training.publish import publish
from mlk8s.training.signals import StopSignal
from mlk8s.training.task import TrainingTask

if TYPE_CHECKING:
    import torch

log = logging.getLogger("mlk8s.training")


@dataclass
class Outcome:
    exit_code: int
    result: dict[str, Any]


class Trainer:
    """Runs one process's share of a training job against a checkpoint store."""

    config: TrainConfig
    task_cls: type[TrainingTask]
    stop: StopSignal
    prepared: Prepared | None
    checkpointer: Checkpointer | None
    history: History
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
        self.history = History()
        self.resumes = 0
        self.work_lost_steps = 0
        self.resumed_from_step = 0
        self.loop_seconds = 0.0
        self.loop_cpu_seconds = 0.0
        self.loop_samples = 0

    # -- setup ---------------------------------------------------------------------------------------------

    def prepare(self) -> Prepared:
        """Everything that can fail on bad input, done before any training or store mutation."""
        self.prepared = prepare(self.config, self.task_cls, self.stop)
        return self.prepared

    def _ready(self) -> tuple[Prepared, Checkpointer]:
        assert self.prepared is not None and self.checkpointer is not None, "prepare() and run() come first"
        return self.prepared, self.checkpointer

    # -- the run -------------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Resume (or start), train to the end or to a stop request, and report the outcome."""
        p = self.prepared if self.prepared is not None else self.prepare()
        previous = self.stop.install() if self._owns_stop else {}
        params = frozenset(f"model.{name}" for name, _ in p.model.named_parameters())
        try:
            if p.resume is not None:
                self.history = p.resume.history
            self.checkpointer = Checkpointer(p.store, self.history, params)
            p.store.claim_generation()
            step = self._start()
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
            status = self._train(step)
            self.loop_seconds = time.perf_counter() - started
            self.loop_cpu_seconds = time.thread_time() - cpu_started
            return status if status is not None else self._finish()
        except NonFiniteError as exc:
            committed = None
            if self.checkpointer is not None:
                try:  # a checkpoint still on the writer is a good one: name it once it has landed
                    self.checkpointer.writer.wait()
                except Exception:  # the writer's own failure is not this error's news
                    log.debug("mlk8s: the writer failed while a non-finite loss stopped the run", exc_info=True)
                committed = self.checkpointer.last_committed
            good = f"the last good checkpoint ({committed.uri}) stays" if committed else "no checkpoint was committed"
            raise NonFiniteError(f"{exc}; {good}") from exc
        finally:
            StopSignal.uninstall(previous)
            if self.checkpointer is not None:
                self.checkpointer.close()
            p.task.teardown()

    def _start(self) -> int:
        """Account for the resume (the heartbeats of earlier processes say how far they got); the first step."""
        p, ckpt = self._ready()
        progress = {g: h for g, h in p.store.read_progress().items() if g < (p.store.generation or 0)}
        step = 0
        resume = p.resume
        if resume is not None:
            step = resume.step
            self.resumes = int(resume.run["resumes"])
            self.work_lost_steps = int(resume.run["work_lost_steps"])
            info = resume.checkpoint.info
            ckpt.resumed_from(info, step)
            committed_at = resume.checkpoint.manifest.committed_at or time.time()
            self.history.checkpoint_committed(step, int(resume.checkpoint.meta.get("epoch", 0)), info.uri, committed_at)
        if progress:
            # The previous process's heartbeat says how far it got; its record also carries the running totals,
            # which a checkpoint misses when a process died before committing anything.
            last = progress[max(progress)]
            lost = max(0, int(last.get("step", 0)) - step)
            self.resumes = max(self.resumes, int(last.get("resumes", 0))) + 1
            self.work_lost_steps = max(self.work_lost_steps, int(last.get("work_lost_steps", 0))) + lost
            self.history.resumed(step, lost, time.time())
            log.info("mlk8s: resumed from step=%d work_lost_steps=%d", step, lost)
            log.info(
                "mlk8s: resume details: epoch=%d resumes=%d total_work_lost_steps=%d checkpoint=%s",
                step // p.steps_per_epoch,
                self.resumes,
                self.work_lost_steps,
                resume.checkpoint.info.uri if resume else None,
            )
        self.resumed_from_step = step
        self._heartbeat(step, sync=True)
        return step

    def _heartbeat(self, step: int, *, sync: bool = False) -> None:
        p, ckpt = self._ready()
        body = {
            "step": step,
            "epoch": step // p.steps_per_epoch,
            "resumed_from_step": self.resumed_from_step,
            "resumes": self.resumes,
            "work_lost_steps": self.work_lost_steps,
            "updated_at": time.time(),
        }
        ckpt.heartbeat(body, sync=sync)

    def _state(self, step: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(model state, the rest, manifest meta) of the training state after ``step`` steps."""
        p, _ = self._ready()
        epoch, position = divmod(step, p.steps_per_epoch)
        rest: dict[str, Any] = {
            "optimizer": p.optimizer.state_dict(),
            "rng": state_io.capture_rng(),
            "progress": {"step": step, "epoch": epoch, "batch_in_epoch": position},
            "run": {
                "fingerprint": self.config.fingerprint(),
                "data": p.data,
                "resumes": self.resumes,
                "work_lost_steps": self.work_lost_steps,
                "threads": self.config.threads,
                "history": self.history.state(),
            },
        }
        if p.scheduler is not None:
            rest["scheduler"] = p.scheduler.state_dict()
        if p.scaler is not None:
            rest["scaler"] = p.scaler.state_dict()
        meta = {"epoch": epoch, "batch_in_epoch": position, "total_steps": p.total_steps}
        return p.model.state_dict(), rest, meta

    def _checkpoint(self, step: int, progress: ProgressLog, *, background: bool = True) -> None:
        _, ckpt = self._ready()
        started = time.perf_counter()
        progress.check_finite(step)
        model_state, rest, meta = self._state(step)
        ckpt.step_thread_seconds += time.perf_counter() - started  # gathering the state is checkpointing's cost too
        ckpt.checkpoint(step, meta["epoch"], model_state, rest, meta, background=background)

    def _step(self, indices: torch.Tensor, autocast: Any) -> torch.Tensor:
        """One optimizer step on the batch of ``indices``; the detached loss."""
        p, ckpt = self._ready()
        batch = p.task.get_batch(indices)
        p.optimizer.zero_grad(set_to_none=True)
        if autocast is not None:
            with autocast:
                loss = p.task.training_step(p.model, batch)
        else:
            loss = p.task.training_step(p.model, batch)
        if p.scaler is not None:
            p.scaler.scale(loss).backward()
            ckpt.before_update()  # a snapshot's copy of the parameters overlaps forward and backward, not this
            p.scaler.step(p.optimizer)
            p.scaler.update()
        else:
            loss.backward()
            ckpt.before_update()
            p.optimizer.step()
        if p.scheduler is not None:
            p.scheduler.step()
        return loss.detach()

    def _train(self, step: int) -> Outcome | None:
        import torch

        cfg = self.config
        p, ckpt = self._ready()
        spe, bs = p.steps_per_epoch, cfg.batch_size
        p.model.train()
        first_step = step + 1
        self.loop_samples = 0
        ckpt.last_commit_time = time.monotonic()
        progress = ProgressLog(
            epochs=cfg.epochs,
            total_steps=p.total_steps,
            every_steps=cfg.log_every_steps,
            every_seconds=cfg.log_every_seconds,
            since_checkpoint=lambda: time.monotonic() - ckpt.last_commit_time,
        )
        autocast = torch.autocast(p.device.type, dtype=p.amp_dtype) if p.amp_dtype is not None else None
        order, order_epoch = None, -1
        while step < p.total_steps:
            if self.stop.requested:
                return self._interrupted(step, progress)
            epoch, position = divmod(step, spe)
            if order is None or order_epoch != epoch:
                order, order_epoch = epoch_permutation(cfg.seed, epoch, p.train_size), epoch
            indices = order[position * bs : (position + 1) * bs]
            loss = self._step(indices, autocast)
            step += 1
            self.loop_samples += len(indices)
            if step == first_step:
                log.info("mlk8s: first step done step=%d", step)
                model_state, rest, _ = self._state(step)  # the optimizer's state exists now: its layout is final
                ckpt.warm_up(model_state, rest)
            epoch_end = step % spe == 0
            self.history.on_step(step, epoch, loss)
            progress.after_step(step, step // spe, epoch_end, loss, len(indices))
            due = (cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0) or (
                epoch_end and cfg.checkpoint_every_epochs and (step // spe) % cfg.checkpoint_every_epochs == 0
            )
            if due:
                self._checkpoint(step, progress)
            else:
                ckpt.writer.check()
            if time.monotonic() - ckpt.last_heartbeat >= cfg.heartbeat_seconds:
                self._heartbeat(step)
        progress.check_finite(step)
        if self.stop.requested:
            log.info("mlk8s: stop requested after the last step; finishing normally")
        return None

    def _interrupted(self, step: int, progress: ProgressLog) -> Outcome:
        assert self.stop.at is not None
        _, ckpt = self._ready()
        ckpt.before_update()
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
                self._checkpoint(step, progress, background=False)
                emergency = True
            else:
                log.warning(
                    "mlk8s: emergency checkpoint skipped: it needs ~%.1fs but %.1fs of grace is left; the last "
                    "committed checkpoint stands",
                    needed,
                    left,
                )
                ckpt.writer.wait()
        self._heartbeat(step, sync=True)
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
                "history": self.history.to_json(),
            },
        )

    def _finish(self) -> Outcome:
        import torch

        p, ckpt = self._ready()
        ckpt.before_update()
        ckpt.writer.wait()
        p.model.eval()
        with torch.no_grad():
            metrics = {k: _json_float(v) for k, v in p.task.evaluate(p.model).items()}
        committed = ckpt.last_committed
        info = {
            "checkpoint_uri": committed.uri if committed else None,
            "metrics": metrics,
            "steps": p.total_steps,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "resumes": self.resumes,
            "work_lost_steps": self.work_lost_steps,
            "task": self.config.task,
            "task_info": p.task.describe(),
            "data": p.data,
            "device": str(p.device),
        }
        model_loc = publish(p.output, p.model, info)
        log.info(
            "mlk8s: training done steps=%d resumes=%d work_lost_steps=%d metrics=%s model=%s",
            p.total_steps,
            self.resumes,
            self.work_lost_steps,
            json.dumps(metrics, sort_keys=True),
            model_loc.uri,
        )
        result = {"status": "done", "output_uri": p.output.uri, **info, "history": self.history.to_json()}
        result.pop("task_info")
        return Outcome(EXIT_OK, result)


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
