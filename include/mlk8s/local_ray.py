"""A real local Ray cluster made of separate node processes, with token authentication on.

Tests, benchmarks and the local demo need a Ray cluster that behaves like the KubeRay pool: a head node
and worker nodes that come and go as separate processes. ``ray.init()`` gives one in-process node, and
``ray.cluster_utils`` is internal; this helper drives the public ``ray start`` CLI instead (exec arrays, never
a shell), one ``ray start --block`` process per node, so a node is stopped by signalling exactly its own
process group. ``ray stop`` is never used: it stops every Ray process of the user on the machine, including clusters
other people run.

Authentication: Ray 2.60 reads ``RAY_AUTH_MODE=token`` and the token from ``RAY_AUTH_TOKEN``, then
``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``. The shared default file is left alone: each cluster gets
a token file in its own temp dir (mode 0600) and every node and client is pointed at it with
``RAY_AUTH_TOKEN_PATH``. One process uses one token for all the clusters it starts (Ray caches the token per
process), taken from ``RAY_AUTH_TOKEN`` when the caller already has one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"  # noqa: S105 - a variable name, not a secret
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"  # noqa: S105 - a variable name
ADDRESS_ENV = "RAY_ADDRESS"
TOKEN_FILE = "auth_token"  # noqa: S105 - a file name

#: Ray puts unix sockets under ``<temp_dir>/session_<timestamp>_<pid>/sockets/``; Linux caps a socket path at
#: 107 bytes, so the temp dir has to be short.
MAX_TEMP_DIR_LEN = 48
#: Object store per node unless told otherwise: small, because many people share this machine's /dev/shm.
DEFAULT_OBJECT_STORE_BYTES = 512 * 1024**2

_token_lock = threading.Lock()
_process_token: str | None = None


def process_token() -> str:
    """The token every cluster started by this process accepts (Ray caches one token per process)."""
    global _process_token
    with _token_lock:
        if _process_token is None:
            _process_token = os.environ.get(AUTH_TOKEN_ENV) or secrets.token_hex(32)
        return _process_token


def free_port() -> int:
    """A TCP port nobody listens on right now (others run Ray on this machine too: never assume defaults)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def enable_token_auth(token: str | None = None) -> None:
    """Turn token auth on for this process and its children, with ``token`` (default: the process token).

    Ray reads ``RAY_AUTH_MODE`` into a cached config when it is imported; the cache is refreshed here so
    the mode applies even when ``ray`` was imported first.
    """
    os.environ[AUTH_MODE_ENV] = "token"
    os.environ[AUTH_TOKEN_ENV] = token or process_token()
    if "ray" in sys.modules:
        with contextlib.suppress(Exception):
            from mlk8s import compat

            compat.get("ray.Config").initialize("")
            compat.get("ray.AuthenticationTokenLoader").instance().reset_cache()


class RayClusterError(RuntimeError):
    """A node did not start or stop as asked; the message carries the tail of its log."""


@dataclass
class RayNode:
    """One node of the cluster: its ``ray start --block`` process (and process group) and its Ray node id."""

    name: str
    node_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    num_cpus: int
    num_gpus: int
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    head: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class NodeInfo:
    """An alive node as the GCS reports it."""

    node_id: str
    name: str
    resources: dict[str, float]
    labels: dict[str, str]
    head: bool


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
        dashboard: bool = False,
        object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
        startup_timeout_s: float = 90.0,
        stop_grace_s: float = 20.0,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self.temp_dir = Path(temp_dir).absolute()
        if len(str(self.temp_dir)) > MAX_TEMP_DIR_LEN:
            raise ValueError(
                f"temp_dir {str(self.temp_dir)!r} is {len(str(self.temp_dir))} characters; Ray's unix socket "
                f"paths under it overflow the 107-byte limit. Pass a temp_dir of at most {MAX_TEMP_DIR_LEN} "
                "characters, "
                "e.g. tempfile.mkdtemp(prefix='rl-', dir='/tmp')."
            )
        if head_cpus < 0 or head_gpus < 0:
            raise ValueError("head_cpus and head_gpus must be >= 0")
        self.head_cpus = head_cpus
        self.head_gpus = head_gpus
        self.head_resources = dict(head_resources or {})
        self.port = port
        self.dashboard = dashboard
        self.object_store_bytes = object_store_bytes
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.drain_timeout_s = drain_timeout_s
        self.dashboard_port: int | None = None
        self._address: str | None = None
        self._nodes: dict[str, RayNode] = {}
        self._counter = 0
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self._address is None:
            raise RayClusterError("the cluster is not started; call start() first")
        return self._address

    @property
    def token_path(self) -> Path:
        return self.temp_dir / TOKEN_FILE

    @property
    def dashboard_url(self) -> str | None:
        if not self.dashboard or self.dashboard_port is None:
            return None
        return f"http://127.0.0.1:{self.dashboard_port}"

    def auth_env(self) -> dict[str, str]:
        """What any process (node, driver, CLI) needs to authenticate against this cluster."""
        return {AUTH_MODE_ENV: "token", AUTH_TOKEN_PATH_ENV: str(self.token_path)}

    def client_env(self) -> dict[str, str]:
        """Variables to add to a driver's environment so ``ray.init()`` joins this cluster, authenticated."""
        return {ADDRESS_ENV: self.address, **self.auth_env()}

    def start(self) -> str:
        """Start the head node; returns the GCS address (``host:port``)."""
        if self._address is not None:
            return self._address
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._write_token()
        self.enable_auth_in_this_process()
        port = self.port or free_port()
        self.dashboard_port = free_port()
        args = [
            "--head",
            f"--port={port}",
            f"--num-cpus={self.head_cpus}",
            f"--num-gpus={self.head_gpus}",
            f"--include-dashboard={'true' if self.dashboard else 'false'}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
        ]
        if self.head_resources:
            args.append(f"--resources={json.dumps(self.head_resources)}")
        host = "127.0.0.1"
        self._address = f"{host}:{port}"
        try:
            node = self._launch("head", args, self.head_cpus, self.head_gpus, self.head_resources, {}, True)
        except BaseException:
            self._address = None
            raise
        logger.info("ray head started: address=%s node_id=%s temp_dir=%s", self._address, node.node_id, self.temp_dir)
        return self._address

    def add_worker(
        self,
        num_cpus: int,
        num_gpus: int = 0,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Start one more worker node as its own ``ray start`` process; returns its Ray node id (hex)."""
        if num_cpus < 0 or num_gpus < 0:
            raise ValueError("num_cpus and num_gpus must be >= 0")
        args = [f"--address={self.address}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        if labels:
            for key, value in labels.items():
                if "," in key + value or "=" in key + value:
                    raise ValueError(f"label {key!r}={value!r}: keys and values may not contain ',' or '='")
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
        with self._lock:
            self._counter += 1
            name = f"worker-{self._counter}"
        node = self._launch(name, args, num_cpus, num_gpus, dict(resources or {}), dict(labels or {}), False)
        logger.info(
            "ray worker node started: name=%s node_id=%s cpus=%s gpus=%s",
            name,
            node.node_id,
            num_cpus,
            num_gpus,
        )
        return node.node_id

    def remove_worker(self, node_id: str, *, force: bool = False) -> None:
        """Stop one worker node: SIGTERM lets Ray drain it (running tasks finish); ``force`` kills it."""
        node = self._nodes.get(node_id)
        if node is None:
            raise KeyError(f"no worker node {node_id!r} in this cluster; known: {sorted(self.worker_ids())}")
        if node.head:
            raise ValueError("remove_worker() does not stop the head node; use stop()")
        self._stop_node(node, force=force)
        self._nodes.pop(node_id, None)
        self._wait_node_dead(node_id)
        logger.info("ray worker node removed: name=%s node_id=%s force=%s", node.name, node_id, force)

    def kill_node(self, node_id: str) -> None:
        """SIGKILL a node's whole process group (raylet and its Ray worker processes): a crashed machine."""
        self.remove_worker(node_id, force=True)

    def worker_ids(self) -> list[str]:
        return [nid for nid, node in self._nodes.items() if not node.head]

    def node(self, node_id: str) -> RayNode:
        return self._nodes[node_id]

    def nodes(self) -> list[NodeInfo]:
        """Alive nodes as the GCS sees them, with their total resources and labels."""
        return self._gcs_nodes()

    def stop(self) -> None:
        """Stop every node this helper started, all at once; safe to call twice."""
        nodes = list(self._nodes.values())
        for node in nodes:
            with contextlib.suppress(ProcessLookupError):
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        for node in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            self._kill_group(node.process)
        self._nodes.clear()
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

    def enable_auth_in_this_process(self) -> None:
        """Make this process a valid client of clusters it starts (GCS queries, an in-process ``ray.init``).

        The token is this process's own (:func:`process_token`), so setting it process-wide cannot lock out
        another cluster this process started.
        """
        enable_token_auth()

    # -- internals ----------------------------------------------------------------------------------------

    def _write_token(self) -> None:
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(process_token())

    def _node_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in (ADDRESS_ENV, AUTH_TOKEN_ENV)}
        env.update(self.auth_env())
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Notice a killed node in ~3 s instead of ~30 s: tests and the autoscaler see node loss promptly.
        env.setdefault("RAY_health_check_period_ms", "1000")
        env.setdefault("RAY_health_check_timeout_ms", "1000")
        env.setdefault("RAY_health_check_failure_threshold", "3")
        # How long a SIGTERMed node waits for its running tasks (Ray's default is 30 s).
        env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = str(self.drain_timeout_s)
        return env

    def _launch(
        self,
        name: str,
        role_args: list[str],
        num_cpus: int,
        num_gpus: int,
        resources: dict[str, float],
        labels: dict[str, str],
        head: bool,
    ) -> RayNode:
        ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
        node_name = f"mlk8s-{name}-{secrets.token_hex(3)}"
        args = [
            ray_bin,
            "start",
            "--block",
            *role_args,
            f"--node-name={node_name}",
            f"--temp-dir={self.temp_dir}",
            f"--object-store-memory={self.object_store_bytes}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
            # Every node on loopback: drivers started here then find a local raylet with a matching IP.
            "--node-ip-address=127.0.0.1",
        ]
        log_path = self.temp_dir / f"{name}.log"
        log = open(log_path, "wb")
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._node_env(),
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RayClusterError(
                    f"ray node {name} exited with code {process.returncode} while starting:\n" + _log_tail(log_path)
                )
            match = [info for info in self._safe_gcs_nodes() if info.name == node_name]
            if match:
                node = RayNode(name, match[0].node_id, process, log_path, num_cpus, num_gpus, resources, labels, head)
                self._nodes[node.node_id] = node
                return node
            if time.monotonic() > deadline:
                self._kill_group(process)
                raise RayClusterError(
                    f"ray node {name} did not register within {self.startup_timeout_s:.0f}s:\n" + _log_tail(log_path)
                )
            time.sleep(0.5)

    def _safe_gcs_nodes(self) -> list[NodeInfo]:
        try:
            return self._gcs_nodes()
        except Exception:  # the GCS is not up yet
            return []

    def _gcs_nodes(self) -> list[NodeInfo]:
        from mlk8s import compat

        client = compat.get("ray.GcsClient")(address=self.address)
        infos = client.get_all_node_info(timeout=10)
        alive: list[NodeInfo] = []
        for info in infos.values():
            if info.state != 0:  # GcsNodeInfo.ALIVE
                continue
            alive.append(
                NodeInfo(
                    node_id=info.node_id.hex(),
                    name=info.node_name,
                    resources=dict(info.resources_total),
                    labels=dict(info.labels),
                    head=bool(info.is_head_node),
                )
            )
        return alive

    def _wait_node_dead(self, node_id: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(info.node_id != node_id for info in self._safe_gcs_nodes()):
                return
            time.sleep(0.5)
        logger.warning("ray node %s still reported alive %.0fs after it was stopped", node_id, timeout_s)

    def _stop_node(self, node: RayNode, *, force: bool) -> None:
        process = node.process
        if not force and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                logger.warning("ray node %s did not stop within %.0fs; killing it", node.name, self.stop_grace_s)
        self._kill_group(process)

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL what is left of the node's process group (its raylet, GCS, Ray workers)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


def info_to_dict(info: NodeInfo) -> dict[str, Any]:
    return {
        "node_id": info.node_id,
        "name": info.name,
        "resources": info.resources,
        "labels": info.labels,
        "head": info.head,
    }
