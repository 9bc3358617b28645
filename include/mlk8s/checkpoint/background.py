"""A single background thread for checkpoint and heartbeat writes, so storage latency stays off the step path.

Commits run in submission order and at most one waits in line: a caller that submits while one is queued
blocks, which bounds memory to two snapshots. Heartbeats coalesce (only the newest matters). The first error
is kept and re-raised in the training thread by :meth:`check`, so a failed commit is never silent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundWriter:
    def __init__(self, name: str = "mlk8s-checkpoint-writer") -> None:
        self._cond = threading.Condition()
        self._commit: Callable[[], None] | None = None
        self._heartbeat: Callable[[], None] | None = None
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue a commit; blocks while another commit is still waiting to start."""
        with self._cond:
            while self._commit is not None and self._error is None:
                self._cond.wait()
            self._raise_if_failed()
            self._commit = job
            self._cond.notify_all()

    def heartbeat(self, job: Callable[[], None]) -> None:
        """Queue a heartbeat, replacing any that has not started yet; never blocks."""
        with self._cond:
            self._heartbeat = job
            self._cond.notify_all()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._busy and self._commit is None

    def wait(self, *, heartbeats: bool = False) -> None:
        """Block until queued commits (and heartbeats, if asked) are written; re-raise a failure."""
        with self._cond:
            while (self._busy or self._commit is not None or (heartbeats and self._heartbeat is not None)) and (
                self._error is None
            ):
                self._cond.wait()
            self._raise_if_failed()

    def check(self) -> None:
        with self._cond:
            self._raise_if_failed()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        # Normal priority on purpose: a niced writer starves on a busy node, commits fall behind, and a SIGKILL
        # then loses more than one interval of work (seen in benchmarks/training_lost_work.py).
        while True:
            with self._cond:
                while self._commit is None and self._heartbeat is None and not self._closed:
                    self._cond.wait()
                if self._commit is None and self._heartbeat is None:
                    return
                job: Callable[[], None]
                if self._commit is not None:
                    job, self._commit = self._commit, None
                else:
                    assert self._heartbeat is not None
                    job, self._heartbeat = self._heartbeat, None
                self._busy = True
                self._cond.notify_all()
            try:
                job()
            except BaseException as exc:  # the training thread re-raises it
                with self._cond:
                    if self._error is None:
                        self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
