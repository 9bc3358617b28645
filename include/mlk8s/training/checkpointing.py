"""The trainer's side of checkpoints: taking a snapshot at a step boundary, committing it on the background
writer, heartbeats, retention, and how long a save takes (the emergency-checkpoint decision depends on it).

A snapshot goes into a preallocated image (mlk8s.checkpoint.snapshot); checking, hashing, writing and retention
run on the writer thread, so storage never holds up a step. The copy itself mostly overlaps the next step:
parameters and optimizer state change only in the optimizer's update, so a copier thread copies them while the
next batch runs forward and backward, and the step thread waits for it (:meth:`Checkpointer.before_update`) only
before that update. What the forward pass may change (module buffers such as running statistics) and the small
JSON skeleton (RNG states, scheduler, progress) are taken at the step boundary itself. Hence the contract of a
task: ``training_step`` must not modify parameters in place (the optimizer does that).

Two images at most exist (one being written, one being filled): if both are busy when a checkpoint is due,
because storage is slower than the checkpoint interval, the step waits for one. Every moment the step thread
spends here, that wait included, is counted in :attr:`Checkpointer.step_thread_seconds`. The first image is
allocated and touched on the writer thread right after the first step (:meth:`warm_up`), so no checkpoint pays
for page faults on the step thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mlk8s.checkpoint import BackgroundWriter, CheckpointInfo, CheckpointStore, checkpoint_name
from mlk8s.checkpoint.snapshot import SnapshotImage, SnapshotPool, layout_of
from mlk8s.training import state as state_io
from mlk8s.training.history import History
from mlk8s.training.numerics import NonFiniteError, non_finite

log = logging.getLogger("mlk8s.training")

#: Assumed write speed before the first checkpoint has been timed (deliberately pessimistic).
_UNMEASURED_BYTES_PER_S = 20e6
_UNMEASURED_OVERHEAD_S = 0.5
#: Headroom over the slowest measured save, for the emergency-checkpoint decision.
_SAVE_SAFETY = 1.5
_EXIT_MARGIN_S = 0.2


class Checkpointer:
    """Commits snapshots of the training state to a :class:`CheckpointStore` without holding up the steps.

    ``parameters`` names the snapshot tensors of the model's parameters: they must hold no NaN or infinity (the
    writer checks before committing, so a diverged run never leaves a non-finite checkpoint behind), and they,
    with the optimizer state, are copied off the step thread.
    """

    #: Snapshot names under which the optimizer's per-parameter state is encoded (mlk8s.training.state).
    OPTIMIZER_STATE = "state.optimizer.state."

    def __init__(self, store: CheckpointStore, history: History, parameters: frozenset[str] = frozenset()) -> None:
        import torch

        self.store = store
        self.history = history
        self.parameters = parameters
        self.writer = BackgroundWriter()
        self._copier = ThreadPoolExecutor(1, thread_name_prefix="mlk8s-snapshot-copy")
        self._pending_copy: Future[None] | None = None
        self.pool = SnapshotPool()
        self._pin = torch.cuda.is_available()
        self._lock = threading.Lock()
        self._state_bytes = 0
        #: The newest committed checkpoint (the resumed one until this process commits its own).
        self.last_committed: CheckpointInfo | None = None
        self.last_commit_time = time.monotonic()
        #: The step of the newest snapshot handed to the writer (or restored): nothing newer to save than that.
        self.submitted_step = -1
        #: Checkpoints retention must keep whatever their age (the one this process resumed from).
        self.protect: frozenset[str] = frozenset()
        self.last_heartbeat = 0.0
        #: Seconds the step thread spent on checkpoints and heartbeats (snapshots, waiting for the writer), and
        #: CPU seconds the writer thread spent on them: what benchmarks attribute to checkpointing.
        self.step_thread_seconds = 0.0
        self.writer_cpu_seconds = 0.0
        self.committed = 0
        self.bytes_written = 0
        #: Writer seconds of the latest commits (check, hash, write, marker), newest last.
        self.commit_seconds: deque[float] = deque(maxlen=1000)

    def resumed_from(self, info: CheckpointInfo, step: int) -> None:
        self.last_committed = info
        self.submitted_step = step
        self.protect = frozenset({info.name})

    def warm_up(self, model_state: Mapping[str, Any], rest: dict[str, Any]) -> None:
        """Allocate the snapshot image for this state's layout on the writer thread (call after the first step)."""
        tensors, _ = state_io.encode(dict(model_state), rest, copy=False)
        layout = layout_of(tensors)
        if layout is not None:
            self.writer.submit(lambda: self.pool.prepare(layout, pin=self._pin))

    def checkpoint(
        self,
        step: int,
        epoch: int,
        model_state: Mapping[str, Any],
        rest: dict[str, Any],
        meta: dict[str, Any],
        *,
        background: bool = True,
    ) -> None:
        """Snapshot now (on the step thread), commit on the writer (or here, when ``background`` is False)."""
        started = time.perf_counter()
        if not background:
            self.writer.wait()
        rest = dict(rest)
        run = rest.pop("run", None)  # JSON only: joins the skeleton without the walk
        tensors, skeleton = state_io.encode(dict(model_state), rest, copy=False, plain={"run": run} if run else None)
        layout = layout_of(tensors)
        image: SnapshotImage | None = None
        copied: Future[None] | None = None
        if layout is not None:
            image = self.pool.acquire(layout, pin=self._pin)
            if background:
                later = [n for n in image.views if n in self.parameters or n.startswith(self.OPTIMIZER_STATE)]
                image.fill(tensors, [n for n in image.views if n not in set(later)])
                copied = self._pending_copy = self._copier.submit(image.fill, tensors, later)
            else:
                image.fill(tensors)
            snapshot: Any = image
        else:  # a dtype safetensors images do not hold: plain copies, serialized on the writer
            snapshot = {name: t.to("cpu", copy=True).contiguous() for name, t in tensors.items()}
        if not self._state_bytes:
            self._state_bytes = image.nbytes if image is not None else sum(t.nbytes for t in snapshot.values())
        self.submitted_step = step
        if background and self.store.generation is not None:
            uri = self.store.root.child(checkpoint_name(self.store.generation, step)).uri
            self.history.checkpoint_taken(step, epoch, uri, time.time())

        def job() -> None:
            cpu_started = time.thread_time()
            try:
                if copied is not None:
                    copied.result()
                self._commit(step, epoch, snapshot, skeleton, meta)
            finally:
                if image is not None:
                    self.pool.release(image)
                self.writer_cpu_seconds += time.thread_time() - cpu_started

        if background:
            self.writer.submit(job)
        else:
            job()
        self.step_thread_seconds += time.perf_counter() - started

    def before_update(self) -> None:
        """Wait until the last snapshot's copy of the parameters and optimizer state is done (call it before every
        optimizer update, and before anything else reads or writes the snapshot's source)."""
        pending = self._pending_copy
        if pending is None:
            return
        started = time.perf_counter()
        pending.result()
        self._pending_copy = None
        self.step_thread_seconds += time.perf_counter() - started

    def _commit(self, step: int, epoch: int, snapshot: Any, skeleton: Any, meta: dict[str, Any]) -> None:
        started = time.perf_counter()
        tensors = snapshot.views if isinstance(snapshot, SnapshotImage) else snapshot
        bad = non_finite((name, tensors[name]) for name in sorted(self.parameters) if name in tensors)
        if bad:
            raise NonFiniteError(
                f"the weights at step {step} hold NaN or infinity (in {', '.join(bad[:3])}); that checkpoint was "
                "not committed. Lower --lr, or check the data"
            )
        if isinstance(snapshot, SnapshotImage):
            files: dict[str, Any] = {
                state_io.TENSORS_FILE: snapshot.data(),
                state_io.JSON_FILE: state_io.skeleton_bytes(skeleton),
            }
        else:
            files = state_io.serialize(snapshot, skeleton)
        info = self.store.commit(step, files, meta)
        elapsed = time.perf_counter() - started
        with self._lock:
            self.last_committed = info
            self.last_commit_time = time.monotonic()
            self.commit_seconds.append(elapsed)
            self._state_bytes = sum(len(b) for b in files.values())
            self.committed += 1
            self.bytes_written += self._state_bytes
        self.history.checkpoint_committed(step, epoch, info.uri, time.time())
        log.info("mlk8s: checkpoint committed step=%d epoch=%d uri=%s", step, epoch, info.uri)
        removed = self.store.prune(self.protect)
        if removed:
            log.info("mlk8s: retention removed %d old checkpoint(s): %s", len(removed), ", ".join(removed))

    def heartbeat(self, body: dict[str, Any], *, sync: bool = False) -> None:
        """Record progress beside the checkpoints; ``sync`` waits for queued writes and writes it here."""
        self.last_heartbeat = time.monotonic()
        if sync:
            self.writer.wait(heartbeats=True)  # a queued older heartbeat must not land after this one
            self.store.write_progress(body)
            return
        started = time.perf_counter()

        def job() -> None:
            cpu_started = time.thread_time()
            try:
                self.store.write_progress(body)
            finally:
                self.writer_cpu_seconds += time.thread_time() - cpu_started

        self.writer.heartbeat(job)
        self.step_thread_seconds += time.perf_counter() - started

    def estimated_save_seconds(self) -> float:
        """How long a checkpoint takes: the slowest recent save with headroom, or a size-based guess."""
        with self._lock:
            if self.commit_seconds:
                return max(list(self.commit_seconds)[-5:]) * _SAVE_SAFETY + _EXIT_MARGIN_S
            return self._state_bytes / _UNMEASURED_BYTES_PER_S + _UNMEASURED_OVERHEAD_S

    def emergency_fits(self, grace_left: float) -> tuple[bool, float]:
        """Whether an emergency checkpoint (after any write in flight) fits in what is left of the grace period."""
        needed = self.estimated_save_seconds()
        if not self.writer.idle:
            needed *= 2
        return needed <= grace_left, needed

    def close(self) -> None:
        self._copier.shutdown(wait=True)
        self.writer.close()
