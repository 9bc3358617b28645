"""A real local Ray cluster made of separate node processes, with token auth on and loopback-only by default.

Tests, benchmarks, the local demo and the local pool service need a Ray cluster that behaves like the KubeRay
pool: a head node and worker nodes that come and go as separate processes. ``ray.init()`` gives one
in-process node, and ``ray.cluster_utils`` is internal; this class drives the public ``ray start`` CLI
instead, one node per process (:mod:`mlk8s.local_ray.nodes`).

Security by default: every node starts with token auth on whatever the caller's environment says, with a token
file of its own (mode 0600) in the cluster's temp dir, and every server binds to ``host``, 127.0.0.1 unless
the caller names another address (a test whose driver lives in its own network namespace does).

A cluster's description (address, token file, nodes by pid) is plain JSON (:meth:`to_state`), so another
process can take over a cluster it did not start (:meth:`from_state`): that is how the local pool service
outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from mlk8s.local_ray.nodes import (
    DEFAULT_OBJECT_STORE_BYTES,
    NodeRecord,
    NodeSettings,
    NodeSpec,
    RayNodeError,
    is_alive,
    kill_group,
    retry_start,
    start_node,
    stop_node,
    wait_dead,
)
from mlk8s.local_ray.ray_start import keep_loopback
from mlk8s.net import LOOPBACK, free_port, is_loopback
from mlk8s.ray_auth import (
    ADDRESS_ENV,
    AUTH_MODE_ENV,
    AUTH_TOKEN_PATH_ENV,
    enable_token_auth,
    process_token,
    write_token_file,
)
from mlk8s.ray_gcs import GcsClient, GcsError, GcsNode

logger = logging.getLogger(__name__)

TOKEN_FILE = "auth_token"  # noqa: S105 - a file name


class LocalRayCluster:
    """A head node plus any number of worker nodes, all local processes, token auth on.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (always stop what you start).
    """

    def __init__(
        self,
        temp_dir: str | os.PathLike[str],
        *,
        head_cpus: int = 1,
        head_gpus: int = 0,
        head_resources: dict[str, float] | None = None,
        port: int | None = None,
        host: str = LOOPBACK,
        dashboard: bool = False,
        object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
        startup_timeout_s: float = 90.0,
        stop_grace_s: float = 20.0,
        drain_timeout_s: float = 10.0,
        token: str | None = None,
    ) -> None:
        self.temp_dir = Path(temp_dir).absolute()
        self.settings = NodeSettings(
            temp_dir=self.temp_dir,
            token_path=self.temp_dir / TOKEN_FILE,
            host=host,
            object_store_bytes=object_store_bytes,
            drain_timeout_s=drain_timeout_s,
        )
        self.head_spec = NodeSpec(head_cpus, head_gpus, dict(head_resources or {}))
        self.port = port
        self.dashboard = dashboard
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.dashboard_port: int | None = None
        self._token = token
        self._address: str | None = None
        self._records: dict[str, NodeRecord] = {}
        #: Nodes whose process runs but that have not registered yet, by pid (see :meth:`end_abandoned_starts`).
        self._starting: dict[int, NodeRecord] = {}
        #: Called whenever a node's process has been spawned, before its registration is awaited: the pool
        #: service writes its state file there, so a node whose starter is SIGKILLed is still on record.
        self.on_change: Callable[[], None] | None = None
        self._counter = 0
        self._lock = threading.Lock()

    # -- what clients need --------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.settings.host or LOOPBACK

    @property
    def address(self) -> str:
        if self._address is None:
            raise RayNodeError("the cluster is not started; call start() first")
        return self._address

    @property
    def token_path(self) -> Path:
        return self.settings.token_path

    @property
    def token(self) -> str:
        """The token this cluster accepts (the caller's, else this process's; see :mod:`mlk8s.ray_auth`)."""
        if self._token is None:
            self._token = process_token()
        return self._token

    @property
    def dashboard_url(self) -> str | None:
        if not self.dashboard or self.dashboard_port is None:
            return None
        return f"http://{self.host}:{self.dashboard_port}"

    def gcs(self, timeout_s: float = 10.0) -> GcsClient:
        """A GCS client of this cluster holding its token (no process environment involved)."""
        return GcsClient(self.address, token=self.token, timeout_s=timeout_s)

    def auth_env(self) -> dict[str, str]:
        """What any process (node, driver, CLI) needs to authenticate against this cluster."""
        return {AUTH_MODE_ENV: "token", AUTH_TOKEN_PATH_ENV: str(self.token_path)}

    def client_env(self) -> dict[str, str]:
        """Variables to add to a driver's environment so it joins this cluster, authenticated."""
        return {ADDRESS_ENV: self.address, **self.auth_env()}

    def enable_auth_in_this_process(self) -> None:
        """Make this process's own Ray (an in-process ``ray.init(address=cluster.address)``) a valid client of
        this cluster: its token, and a loopback address kept loopback (:mod:`mlk8s.local_ray.ray_start`)."""
        enable_token_auth(self.token)
        if is_loopback(self.host):
            keep_loopback()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> str:
        """Start the head node; returns the GCS address (``host:port``)."""
        if self._address is not None:
            return self._address
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        write_token_file(self.token_path, self.token)

        def attempt() -> NodeRecord:
            port = self.port or free_port()  # a fresh port each attempt: a dying GCS may still hold the last
            self.dashboard_port = free_port()
            role = [
                "--head",
                f"--port={port}",
                f"--include-dashboard={'true' if self.dashboard else 'false'}",
                f"--dashboard-host={self.host}",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
            ]
            self._address = f"{self.host}:{port}"
            try:
                return self._start("head", self.head_spec, role, head=True)
            except BaseException:
                self._address = None
                raise

        record = retry_start(attempt, "head")
        logger.info("ray head started: address=%s node_id=%s temp_dir=%s", self._address, record.node_id, self.temp_dir)
        return self.address

    def add_worker(
        self,
        num_cpus: int,
        num_gpus: int = 0,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Start one more worker node as its own ``ray start`` process; returns its Ray node id (hex)."""
        spec = NodeSpec(num_cpus, num_gpus, dict(resources or {}), dict(labels or {}))
        with self._lock:
            self._counter += 1
            name = f"worker-{self._counter}"
        record = retry_start(lambda: self._start(name, spec, [f"--address={self.address}"]), name)
        logger.info(
            "ray worker node started: name=%s node_id=%s cpus=%s gpus=%s", name, record.node_id, num_cpus, num_gpus
        )
        return record.node_id

    def remove_worker(self, node_id: str, *, force: bool = False) -> None:
        """Stop one worker node: SIGTERM lets Ray drain it (running tasks finish); ``force`` kills it."""
        record = self._records.get(node_id)
        if record is None:
            raise KeyError(f"no worker node {node_id!r} in this cluster; known: {sorted(self.worker_ids())}")
        if record.head:
            raise ValueError("remove_worker() does not stop the head node; use stop()")
        stop_node(record, grace_s=self.stop_grace_s, force=force)
        self._records.pop(node_id, None)
        self._wait_gone_from_gcs(node_id)
        logger.info("ray worker node removed: name=%s node_id=%s force=%s", record.name, node_id, force)

    def kill_node(self, node_id: str) -> None:
        """SIGKILL a node's whole process group (raylet and its Ray worker processes): a crashed machine."""
        self.remove_worker(node_id, force=True)

    def worker_ids(self) -> list[str]:
        return [nid for nid, record in self._records.items() if not record.head]

    def node(self, node_id: str) -> NodeRecord:
        return self._records[node_id]

    def records(self) -> list[NodeRecord]:
        return list(self._records.values())

    def nodes(self) -> list[GcsNode]:
        """Alive nodes as the GCS sees them, with their total resources and labels."""
        with self.gcs() as gcs:
            return gcs.nodes()

    def end_abandoned_starts(self) -> list[NodeRecord]:
        """End every node left starting: its process ran, but whoever started it died before it registered.

        Only a caller that knows no start is under way may call this: the pool service, under its lock (a node
        still starting holds that lock, so one found in the state file belongs to a dead process).
        """
        ended = list(self._starting.values())
        for record in ended:
            logger.warning(
                "ray node %s (pid %d) was left starting by a process that ended before it registered; ending it",
                record.name,
                record.pid,
            )
            kill_group(record.pid)
            wait_dead(record, 10.0)
        self._starting.clear()
        return ended

    def stop(self) -> None:
        """Stop every node of this cluster, all at once; safe to call twice."""
        self.end_abandoned_starts()
        records = list(self._records.values())
        for record in records:
            if is_alive(record):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        for record in records:
            wait_dead(record, deadline - time.monotonic())
            kill_group(record.pid)
            wait_dead(record, 10.0)
        self._records.clear()
        if self._address is not None:
            logger.info("ray cluster stopped: address=%s", self._address)
        self._address = None

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- a cluster another process started -----------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything another process needs to use and stop this cluster (no token: it is in the token file)."""
        return {
            "address": self.address,
            "temp_dir": str(self.temp_dir),
            "host": self.host,
            "object_store_bytes": self.settings.object_store_bytes,
            "drain_timeout_s": self.settings.drain_timeout_s,
            "stop_grace_s": self.stop_grace_s,
            "startup_timeout_s": self.startup_timeout_s,
            "counter": self._counter,
            "nodes": [r.to_json() for r in self._records.values()],
            "starting": [r.to_json() for r in self._starting.values()],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LocalRayCluster:
        """A handle on a running cluster from :meth:`to_state`; nodes that died since are dropped."""
        temp_dir = Path(state["temp_dir"])
        token = (temp_dir / TOKEN_FILE).read_text().strip()
        cluster = cls(
            temp_dir,
            host=state["host"],
            object_store_bytes=int(state["object_store_bytes"]),
            drain_timeout_s=float(state["drain_timeout_s"]),
            stop_grace_s=float(state["stop_grace_s"]),
            startup_timeout_s=float(state["startup_timeout_s"]),
            token=token,
        )
        cluster._address = str(state["address"])
        cluster._counter = int(state["counter"])
        for raw in state["nodes"]:
            record = NodeRecord.from_json(raw)
            if is_alive(record):
                cluster._records[record.node_id] = record
        for raw in state.get("starting", ()):  # absent in the state of an older version
            record = NodeRecord.from_json(raw)
            if is_alive(record):
                cluster._starting[record.pid] = record
        return cluster

    # -- internals ----------------------------------------------------------------------------------------

    def _start(self, name: str, spec: NodeSpec, role: list[str], *, head: bool = False) -> NodeRecord:
        spawned: list[int] = []

        def note(starting: NodeRecord) -> None:
            spawned.append(starting.pid)
            self._starting[starting.pid] = starting
            if self.on_change is not None:
                self.on_change()

        try:
            with self.gcs(timeout_s=5.0) as gcs:
                record = start_node(
                    self.settings, name, spec, role, gcs, head=head, timeout_s=self.startup_timeout_s, on_spawn=note
                )
        finally:
            for pid in spawned:  # registered, or ended by start_node
                self._starting.pop(pid, None)
        self._records[record.node_id] = record
        return record

    def _wait_gone_from_gcs(self, node_id: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self.gcs(timeout_s=5.0) as gcs:
            while time.monotonic() < deadline:
                with contextlib.suppress(GcsError):
                    if all(node.node_id != node_id for node in gcs.nodes()):
                        return
                time.sleep(0.5)
        logger.warning("ray node %s still reported alive %.0fs after it was stopped", node_id, timeout_s)
