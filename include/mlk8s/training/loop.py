"""The training loop that survives being killed: periodic and emergency checkpoints, exact resume.

Exactness comes from three rules. The data order of epoch ``e`` is a permutation drawn from its own generator
seeded by (seed, e), so a resumed process recomputes it and continues at the saved batch position, never
replaying or skipping a batch. Every RNG a step may touch, and the optimizer, scheduler and AMP scaler, are
saved at a step boundary and restored after the model is built (building consumes RNG). Deterministic torch
kernels and a fixed thread count make the arithmetic itself repeatable.

Checkpoint snapshots are taken on the step thread (a copy of the tensors, cheap) and serialized, checksummed
and written on a background thread, so training continues while storage catches up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from mlk8s.checkpoint import BackgroundWriter, CheckpointInfo, CheckpointStore, sha256
from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK
from mlk8s.storage import resolve, write_atomic
from mlk8s.training import state as state_io
from mlk8s.training.task import TaskContext, TaskUsageError, TrainingTask

if TYPE_CHECKING:
    import torch

log = logging.getLogger("mlk8s.training")

MODEL_FILE = "model.safetensors"
MODEL_INFO_FILE = "model.json"
#: Assumed write speed before the first checkpoint has been timed (deliberately pessimistic).
_UNMEASURED_BYTES_PER_S = 20e6
_UNMEASURED_OVERHEAD_S = 0.5
#: Headroom over the slowest measured save, for the emergency-checkpoint decision.
_SAVE_SAFETY = 1.5
_EXIT_MARGIN_S = 0.2


@dataclass(frozen=True)
class TrainConfig:
    """Everything the CLI parses; one field per flag."""

    checkpoint_uri: str
    output_uri: str
    task: str = "mlk8s.training.example:ClassifierTask"
    data: str | None = None
    task_options: dict[str, str] = field(default_factory=dict)
    epochs: int = 5
    seed: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    checkpoint_every_steps: int = 500
    checkpoint_every_epochs: int = 1
    keep_last: int = 3
    termination_grace_seconds: float = 30.0
    heartbeat_seconds: float = 0.25
    log_every_steps: int = 100
    device: str = "auto"
    amp: bool = False
    threads: int = 1

    def fingerprint(self) -> dict[str, Any]:
        """The flags that must match for a checkpoint to be resumed exactly."""
        return {
            "task": self.task,
            "data": self.data,
            "task_options": dict(sorted(self.task_options.items())),
            "epochs": self.epochs,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "amp": self.amp,
        }


_FINGERPRINT_FLAGS = {
    "task": "--task",
    "data": "--data",
    "task_options": "--task-option",
    "epochs": "--epochs",
    "seed": "--seed",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "amp": "--amp",
}


@dataclass
class Outcome:
    exit_code: int
    result: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TaskUsageError("--device", "cuda was asked for but torch sees no GPU; use --device auto or cpu")
    return torch.device(name)


def make_deterministic(threads: int, device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a function of (seed, epoch) only, so a resumed process gets the same."""
    import numpy as np
    import torch

    gen = torch.Generator()
    gen.manual_seed(int(np.random.SeedSequence([seed % 2**63, epoch, 0xDA7A]).generate_state(1, np.uint64)[0] >> 1))
    return torch.randperm(n, generator=gen)


class StopSignal:
    """SIGTERM (and SIGINT) become a timestamp that the loop polls between steps.

    Installed as early as possible by the CLI, so a SIGTERM during start-up is honoured too instead of killing
    the process with the default handler, and kept until the process exits, so a SIGTERM after the last step
    cannot turn a finished run into a signal death.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.at is None:
            self.at = time.monotonic()

    def request(self) -> None:
        self(signal.SIGTERM, None)

    def install(self) -> dict[int, Any]:
        return {sig: signal.signal(sig, self) for sig in self.SIGNALS}

    @staticmethod
    def uninstall(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Runs one process's share of a training job against a checkpoint store."""

    def __init__(self, config: TrainConfig, task_cls: type[TrainingTask], stop: StopSignal | None = None) -> None:
        self.config = config
        self.task_cls = task_cls
        self._owns_stop = stop is None
        self.stop = stop or StopSignal()
        self._lock = threading.Lock()
        self._last_committed: CheckpointInfo | None = None
        self._last_commit_time = time.monotonic()
        self._save_seconds: deque[float] = deque(maxlen=5)
        self._state_bytes = 0
        self._submitted_step = -1
        #: Seconds the step thread spent on checkpoints and heartbeats (snapshots, waiting for the writer), and
        #: CPU seconds the writer thread spent on them: what benchmarks attribute to checkpointing.
        self.checkpoint_step_thread_seconds = 0.0
        self.checkpoint_writer_cpu_seconds = 0.0
        self.checkpoints_committed = 0

    # -- setup ---------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that can fail on bad input, done before any training or store mutation."""
        import torch

        cfg = self.config
        self.device = resolve_device(cfg.device)
        make_deterministic(cfg.threads, self.device)
        context = TaskContext(cfg.data, cfg.seed, cfg.lr, cfg.batch_size, cfg.epochs, self.device, cfg.task_options)
        self.task = self.task_cls(context)
        self.task.setup()
        n = self.task.train_size()
        if n < 1:
            raise TaskUsageError("--data", "the task has no training examples")
        self.train_size = n
        self.steps_per_epoch = math.ceil(n / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        seed_everything(cfg.seed)
        self.model = self.task.build_model().to(self.device)
        self.optimizer = self.task.build_optimizer(self.model)
        self.scheduler = self.task.build_scheduler(self.optimizer, self.total_steps)
        self.amp_dtype: torch.dtype | None = None
        self.scaler: Any = None
        if cfg.amp:
            self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
            if self.device.type == "cuda":
                self.scaler = torch.amp.GradScaler("cuda")
        self.store = CheckpointStore(cfg.checkpoint_uri, keep_last=cfg.keep_last)
        self.output = resolve(cfg.output_uri)

    # -- checkpoint state ----------------------------------------------------------------------------------

    def _snapshot(self, step: int, epoch: int, position: int) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        rest: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "rng": state_io.capture_rng(),
            "progress": {"step": step, "epoch": epoch, "batch_in_epoch": position},
            "run": {
                "fingerprint": self.config.fingerprint(),
                "resumes": self.resumes,
                "work_lost_steps": self.work_lost_steps,
                "threads": self.config.threads,
            },
        }
        if self.scheduler is not None:
            rest["scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            rest["scaler"] = self.scaler.state_dict()
        tensors, skeleton = state_io.encode(self.model.state_dict(), rest)
        meta = {"epoch": epoch, "batch_in_epoch": position, "total_steps": self.total_steps}
        return tensors, skeleton, meta

    def _commit_job(self, step: int, epoch: int, tensors: dict[str, Any], skeleton: Any, meta: dict[str, Any]) -> None:
        cpu_started = time.thread_time()
        try:
            self._commit(step, epoch, tensors, skeleton, meta)
        finally:
            self.checkpoint_writer_cpu_seconds += time.thread_time() - cpu_started

    def _commit(self, step: int, epoch: int, tensors: dict[str, Any], skeleton: Any, meta: dict[str, Any]) -> None:
        started = time.perf_counter()
        files = state_io.serialize(tensors, skeleton)
        info = self.store.commit(step, files, meta)
        elapsed = time.perf_counter() - started
        with self._lock:
            self._last_committed = info
            self._last_commit_time = time.monotonic()
            self._save_seconds.append(elapsed)
            self._state_bytes = sum(len(b) for b in files.values())
            self.checkpoints_committed += 1
        log.info("mlk8s: checkpoint committed step=%d epoch=%d uri=%s", step, epoch, info.uri)
        removed = self.store.prune(self.protect)
        if removed:
            log.info("mlk8s: retention removed %d old checkpoint(s): %s", len(removed), ", ".join(removed))

    def _checkpoint(self, step: int, epoch: int, position: int, *, background: bool = True) -> None:
        started = time.perf_counter()
        tensors, skeleton, meta = self._snapshot(step, epoch, position)
        if not self._state_bytes:
            self._state_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        self._submitted_step = step

        def job() -> None:
            self._commit_job(step, epoch, tensors, skeleton, meta)

        if background:
            self.writer.submit(job)
        else:
            self.writer.wait()
            job()
        self.checkpoint_step_thread_seconds += time.perf_counter() - started

    def estimated_save_seconds(self) -> float:
        """How long a checkpoint takes: the slowest recent save with headroom, or a size-based guess."""
        with self._lock:
            if self._save_seconds:
                return max(self._save_seconds) * _SAVE_SAFETY + _EXIT_MARGIN_S
            return self._state_bytes / _UNMEASURED_BYTES_PER_S + _UNMEASURED_OVERHEAD_S

    def _restore(self, files: dict[str, bytes]) -> dict[str, Any]:
        model_state, rest = state_io.deserialize(files)
        found = rest["run"]["fingerprint"]
        wanted = self.config.fingerprint()
        for key, flag in _FINGERPRINT_FLAGS.items():
            if found.get(key) != wanted.get(key):
                raise TaskUsageError(
                    flag,
                    f"is {wanted.get(key)!r} but the checkpoints under {self.store.uri} were written with "
                    f"{found.get(key)!r}; pass the same value to resume, or use a new --checkpoint-uri",
                )
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(rest["optimizer"])
        if self.scheduler is not None and "scheduler" in rest:
            self.scheduler.load_state_dict(rest["scheduler"])
        if self.scaler is not None and "scaler" in rest:
            self.scaler.load_state_dict(rest["scaler"])
        state_io.restore_rng(rest["rng"])
        return rest

    # -- the run -------------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Resume (or start), train to the end or to a stop request, and report the outcome."""
        previous = self.stop.install() if self._owns_stop else {}
        self.writer = BackgroundWriter()
        try:
            return self._run()
        finally:
            StopSignal.uninstall(previous)
            self.writer.close()

    def _run(self) -> Outcome:
        cfg = self.config
        self.store.claim_generation()
        progress = {g: p for g, p in self.store.read_progress().items() if g < (self.store.generation or 0)}
        checkpoint = self.store.load_latest()
        step = epoch = position = 0
        self.resumes = 0
        self.work_lost_steps = 0
        self.protect: frozenset[str] = frozenset()
        if checkpoint is not None:
            rest = self._restore(checkpoint.files)
            step = rest["progress"]["step"]
            epoch = rest["progress"]["epoch"]
            position = rest["progress"]["batch_in_epoch"]
            self.resumes = rest["run"]["resumes"]
            self.work_lost_steps = rest["run"]["work_lost_steps"]
            self._last_committed = checkpoint.info
            self._submitted_step = step
            self.protect = frozenset({checkpoint.info.name})
            if rest["run"].get("threads") != cfg.threads:
                log.warning(
                    "mlk8s: --threads is %d but the checkpoint was written with %s; results may differ in the "
                    "last bits from an uninterrupted run",
                    cfg.threads,
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
        self.resumed_from_step = step
        self._heartbeat(step, epoch, sync=True)
        log.info(
            "mlk8s: training started step=%d total_steps=%d epochs=%d steps_per_epoch=%d device=%s generation=%d",
            step,
            self.total_steps,
            cfg.epochs,
            self.steps_per_epoch,
            self.device,
            self.store.generation,
        )
        started, cpu_started = time.perf_counter(), time.thread_time()
        status = self._train(step, epoch, position)
        # Wall and step-thread CPU time of the step loop alone (benchmarks compare it with a hand-written loop).
        self.loop_seconds = time.perf_counter() - started
        self.loop_cpu_seconds = time.thread_time() - cpu_started
        if status is not None:
            return status
        return self._finish()

    def _heartbeat(self, step: int, epoch: int, *, sync: bool = False) -> None:
        body = {
            "step": step,
            "epoch": epoch,
            "resumed_from_step": self.resumed_from_step,
            "resumes": self.resumes,
            "work_lost_steps": self.work_lost_steps,
            "updated_at": time.time(),
        }
        self._last_heartbeat = time.monotonic()
        if sync:
            if hasattr(self, "writer"):
                self.writer.wait(heartbeats=True)  # a queued older heartbeat must not land after this one
            self.store.write_progress(body)
        else:
            started = time.perf_counter()

            def job() -> None:
                cpu_started = time.thread_time()
                try:
                    self.store.write_progress(body)
                finally:
                    self.checkpoint_writer_cpu_seconds += time.thread_time() - cpu_started

            self.writer.heartbeat(job)
            self.checkpoint_step_thread_seconds += time.perf_counter() - started

    def _train(self, step: int, epoch: int, position: int) -> Outcome | None:
        import torch

        cfg = self.config
        model, optimizer, scheduler, scaler, task = self.model, self.optimizer, self.scheduler, self.scaler, self.task
        bs = cfg.batch_size
        model.train()
        first_step = step + 1
        self.loop_samples = 0
        self._last_commit_time = time.monotonic()
        running_loss = torch.zeros((), device=self.device)
        window_steps = 0
        window_samples = 0
        window_start = time.perf_counter()
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else None
        while epoch < cfg.epochs:
            order = epoch_permutation(cfg.seed, epoch, self.train_size)
            while position < self.steps_per_epoch:
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
                epoch_end = position == self.steps_per_epoch
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
                        self.total_steps,
                        running_loss.item() / window_steps,
                        window_samples / max(now - window_start, 1e-9),
                        time.monotonic() - self._last_commit_time,
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
                    self.writer.check()
                if time.monotonic() - self._last_heartbeat >= cfg.heartbeat_seconds:
                    self._heartbeat(step, epoch)
                if epoch_end:
                    break
        if self.stop.at is not None:
            log.info("mlk8s: stop requested after the last step; finishing normally")
        return None

    def _interrupted(self, step: int, epoch: int, position: int) -> Outcome:
        assert self.stop.at is not None
        cfg = self.config
        left = cfg.termination_grace_seconds - (time.monotonic() - self.stop.at)
        log.info("mlk8s: SIGTERM received; stopping at step=%d with %.1fs of grace left", step, left)
        emergency = False
        if self._submitted_step == step or step == self.resumed_from_step:
            # Already saved (or in flight), or nothing done since start: the last checkpoint, or the seed for
            # a fresh run, reproduces this exact state.
            self.writer.wait()
        else:
            needed = self.estimated_save_seconds()
            if not self.writer.idle:
                needed *= 2
            if needed <= left:
                self._checkpoint(step, epoch, position, background=False)
                emergency = True
            else:
                log.warning(
                    "mlk8s: emergency checkpoint skipped: it needs ~%.1fs but %.1fs of grace is left; the last "
                    "committed checkpoint stands",
                    needed,
                    left,
                )
                self.writer.wait()
        self._heartbeat(step, epoch, sync=True)
        committed = self._last_committed
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

        self.writer.wait()
        self.model.eval()
        with torch.no_grad():
            metrics = {k: _json_float(v) for k, v in self.task.evaluate(self.model).items()}
        weights = save({k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()})
        digest = sha256(weights)
        self.output.fs.create_dir(self.output.path, recursive=True)
        model_loc = self.output.child(MODEL_FILE)
        write_atomic(model_loc, weights)
        committed = self._last_committed
        info = {
            "model_uri": model_loc.uri,
            "weights_sha256": digest,
            "checkpoint_uri": committed.uri if committed else None,
            "metrics": metrics,
            "steps": self.total_steps,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "resumes": self.resumes,
            "work_lost_steps": self.work_lost_steps,
            "task": self.config.task,
            "task_info": self.task.describe(),
            "device": str(self.device),
        }
        # model.json is written last: its presence means model.safetensors beside it is complete.
        write_atomic(self.output.child(MODEL_INFO_FILE), json.dumps(info, sort_keys=True, indent=2).encode())
        log.info(
            "mlk8s: training done steps=%d resumes=%d work_lost_steps=%d metrics=%s model=%s",
            self.total_steps,
            self.resumes,
            self.work_lost_steps,
            json.dumps(metrics, sort_keys=True),
            model_loc.uri,
        )
        result = {"status": "done", "output_uri": self.output.uri, **info}
        result.pop("task_info")
        return Outcome(EXIT_OK, result)


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
