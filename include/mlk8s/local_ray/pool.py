"""The local Ray pool as a service: a local Ray cluster that lives beside ``make up``, usable from any process.

``python -m mlk8s.local_ray.pool start|stop|status --state-dir DIR`` starts a head node (token auth, loopback
only) and returns; the nodes are their own sessions, so they outlive that command and whichever process
later grows the pool. The state directory holds what any process needs to use the pool: ``pool.json`` (the
GCS address, the Ray temp dir, every node by pid and process start time) and ``auth_token`` (mode 0600).
Processes find the pool through ``MLK8S_LOCAL_RAY_POOL`` (the state dir), which is what the local actuator
of the Ray pool sensor reads in the scheduler, triggerer or worker.

Changes (add or remove a worker, stop) hold an exclusive file lock for their whole duration, so two processes
never start the same node or lose each other's records; ``pool.json`` is replaced atomically, so readers
(``status``) never take the lock and never see half a file. ``stop`` ends every node by pid, never with
``ray stop`` (which would stop other people's clusters on this machine too).

A node is on record from the moment its process runs, not only once it has registered: ``pool.json`` lists it
under ``starting`` while its start is awaited. A process SIGKILLed during that wait (a sensor task killed by its
runner) releases the lock, and the next change, or ``stop``, ends the node it left; without the record that node
would run on in its own session with nothing to stop it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlk8s.local_ray.cluster import TOKEN_FILE, LocalRayCluster
from mlk8s.local_ray.nodes import NodeRecord, is_alive
from mlk8s.net import LOOPBACK
from mlk8s.ray_gcs import GcsClient

POOL_ENV = "MLK8S_LOCAL_RAY_POOL"
STATE_FILE = "pool.json"
LOCK_FILE = "pool.lock"
#: How long a change waits for another process's change (a node start takes up to a minute on a busy machine).
LOCK_TIMEOUT_S = 300.0


class PoolError(RuntimeError):
    """The pool is not there, or not in a state that allows what was asked; the message says what to do."""


@dataclass(frozen=True)
class PoolInfo:
    """What a client of the pool needs, and what is in it."""

    state_dir: Path
    address: str
    token_path: Path
    nodes: tuple[NodeRecord, ...]

    @property
    def workers(self) -> tuple[NodeRecord, ...]:
        return tuple(n for n in self.nodes if not n.head)

    def to_json(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "address": self.address,
            "token_path": str(self.token_path),
            "nodes": [n.to_json() for n in self.nodes],
        }


class LocalRayPool:
    """A handle on the pool whose state lives in ``state_dir``; cheap, holds nothing open."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir).absolute()

    @classmethod
    def from_env(cls, state_dir: str | os.PathLike[str] | None = None) -> LocalRayPool:
        """``state_dir``, else ``$MLK8S_LOCAL_RAY_POOL``; a clear error when neither names one."""
        chosen = state_dir or os.environ.get(POOL_ENV)
        if not chosen:
            raise PoolError(
                f"no local Ray pool named: set {POOL_ENV} to the pool's state dir (make up sets it; or start one "
                "with `python -m mlk8s.local_ray.pool start --state-dir DIR`)"
            )
        return cls(chosen)

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    # -- reading (no lock) -----------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        return data

    def info(self) -> PoolInfo | None:
        """The pool as it is now (dead nodes left out), or None when no pool runs from this state dir."""
        state = self._read()
        if state is None:
            return None
        nodes = tuple(r for r in (NodeRecord.from_json(n) for n in state["cluster"]["nodes"]) if is_alive(r))
        if not any(n.head for n in nodes):
            return None
        return PoolInfo(self.state_dir, state["cluster"]["address"], self.token_path, nodes)

    def running(self) -> PoolInfo:
        info = self.info()
        if info is None:
            raise PoolError(
                f"no local Ray pool runs from {self.state_dir}: start it with "
                f"`python -m mlk8s.local_ray.pool start --state-dir {self.state_dir}` (make up does)"
            )
        return info

    @property
    def token_path(self) -> Path:
        state = self._read()
        if state is None:
            return self.state_dir / TOKEN_FILE
        return Path(state["cluster"]["temp_dir"]) / TOKEN_FILE

    @property
    def token(self) -> str:
        return self.token_path.read_text().strip()

    def gcs(self, timeout_s: float = 10.0) -> GcsClient:
        return GcsClient(self.running().address, token=self.token, timeout_s=timeout_s)

    # -- changing (under the lock) ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any] | None]:
        from filelock import FileLock, Timeout

        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.state_dir / LOCK_FILE))
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout:
            raise PoolError(
                f"the local Ray pool at {self.state_dir} is busy: another change held its lock for "
                f"{LOCK_TIMEOUT_S:.0f} s"
            ) from None
        try:
            yield self._read()
        finally:
            lock.release()

    def _write(self, cluster: LocalRayCluster, extra: Mapping[str, Any]) -> None:
        state = {"cluster": cluster.to_state(), **extra}
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".pool-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=1)
        os.replace(tmp, self.state_path)

    @contextlib.contextmanager
    def _cluster(self) -> Iterator[tuple[LocalRayCluster, dict[str, Any]]]:
        """The running pool's cluster under the lock; whatever the block changes is written back."""
        with self._locked() as state:
            if state is None or self.info() is None:
                self.running()  # raises, saying how to start the pool
            assert state is not None
            cluster = LocalRayCluster.from_state(state["cluster"])
            extra = {k: v for k, v in state.items() if k != "cluster"}
            cluster.end_abandoned_starts()  # the lock is ours: a node still starting was left by a dead process
            cluster.on_change = lambda: self._write(cluster, extra)
            try:
                yield cluster, extra
            finally:
                self._write(cluster, extra)

    def start(self, *, head_cpus: int = 1, host: str = LOOPBACK, object_store_bytes: int | None = None) -> PoolInfo:
        """Start the pool's head node unless the pool already runs (then nothing changes)."""
        with self._locked() as state:
            if state is not None and self.info() is not None:
                return self.running()
            if state is not None:  # a pool whose head died: end what is left of it first
                LocalRayCluster.from_state(state["cluster"]).stop()
                shutil.rmtree(state["cluster"]["temp_dir"], ignore_errors=True)
            temp_dir = tempfile.mkdtemp(prefix="rp-", dir="/tmp")  # short: Ray's socket paths live under it
            kwargs: dict[str, Any] = {"object_store_bytes": object_store_bytes} if object_store_bytes else {}
            cluster = LocalRayCluster(temp_dir, head_cpus=head_cpus, host=host, **kwargs)
            cluster.on_change = lambda: self._write(cluster, {})
            try:
                cluster.start()
            except BaseException:
                cluster.stop()
                shutil.rmtree(temp_dir, ignore_errors=True)
                self.state_path.unlink(missing_ok=True)
                raise
            self._write(cluster, {})
        return self.running()

    def adopt(self, cluster: LocalRayCluster) -> PoolInfo:
        """Serve an already started cluster as this pool (a test's or the demo's own), so other processes and
        the local actuator can grow and shrink it; :meth:`stop` then stops it too."""
        with self._locked():
            self._write(cluster, {})
        return self.running()

    def add_worker(self, num_cpus: int, num_gpus: int = 0, labels: dict[str, str] | None = None) -> NodeRecord:
        with self._cluster() as (cluster, _):
            node_id = cluster.add_worker(num_cpus, num_gpus, labels=labels)
            return cluster.node(node_id)

    def remove_worker(self, node_id: str, *, force: bool = False) -> None:
        with self._cluster() as (cluster, _):
            cluster.remove_worker(node_id, force=force)

    def claim_decision(self, decision_id: str) -> bool:
        """True once per decision id: a replayed decision (a restarted trigger) is not applied twice."""
        with self._cluster() as (_, extra):
            if extra.get("last_decision_id") == decision_id:
                return False
            extra["last_decision_id"] = decision_id
            return True

    def stop(self) -> bool:
        """Stop every node of the pool by pid and remove its Ray temp dir; False when none ran."""
        with self._locked() as state:
            if state is None:
                return False
            cluster = LocalRayCluster.from_state(state["cluster"])
            ran = bool(cluster.records())
            cluster.stop()
            shutil.rmtree(state["cluster"]["temp_dir"], ignore_errors=True)
            self.state_path.unlink(missing_ok=True)
            return ran


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlk8s.local_ray.pool",
        description="A local Ray pool (token auth, loopback only) that outlives this command; "
        f"other processes find it through {POOL_ENV}=<state dir>.",
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument(
        "--state-dir", default=os.environ.get(POOL_ENV), help=f"the pool's state directory (default: ${POOL_ENV})"
    )
    parser.add_argument("--head-cpus", type=int, default=1, help="CPUs of the head node (start; default 1)")
    parser.add_argument("--host", default=LOOPBACK, help="address every Ray server binds to (start; default loopback)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.state_dir:
        print(f"error: --state-dir: name the pool's state directory (or set {POOL_ENV})", file=sys.stderr)
        return 2
    if args.head_cpus < 0:
        print(f"error: --head-cpus={args.head_cpus}: give 0 or more CPUs", file=sys.stderr)
        return 2
    pool = LocalRayPool(args.state_dir)
    try:
        if args.command == "start":
            info: PoolInfo | None = pool.start(head_cpus=args.head_cpus, host=args.host)
        elif args.command == "stop":
            stopped = pool.stop()
            print(json.dumps({"state_dir": str(pool.state_dir), "stopped": stopped}))
            return 0
        else:
            info = pool.info()
    except PoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if info is None:
        print(json.dumps({"state_dir": str(pool.state_dir), "running": False}))
        return 3  # like `systemctl status`: not running
    print(json.dumps({"running": True, **info.to_json()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
