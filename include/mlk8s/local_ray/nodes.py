"""Start and stop one Ray node as its own ``ray start --block`` process: the one place that runs ``ray start``.

The local Ray cluster (head and workers), the local pool service and a driver pod's zero-resource node all
start nodes here. A node is an exec array (never a shell string) run through :mod:`mlk8s.local_ray.ray_start`,
in its own session, so it is stopped by signalling exactly its own process group and it outlives the process
that started it (unless that process asks for the node to die with it). ``ray stop`` is never used: it stops
every Ray process of the user on the machine, including clusters other people run. A node is known by its pid
and the process's start time, so a reused pid is never taken for the node.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tenacity

from mlk8s.net import LOOPBACK, free_port
from mlk8s.ray_auth import ADDRESS_ENV, AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV
from mlk8s.ray_gcs import GcsClient, GcsError, GcsNode

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Ray puts unix sockets under ``<temp_dir>/session_<timestamp>_<pid>/sockets/``; Linux caps a socket path at
#: 107 bytes, so the temp dir has to be short.
MAX_TEMP_DIR_LEN = 48
#: Object store per node unless told otherwise: small, because many people share this machine's /dev/shm.
DEFAULT_OBJECT_STORE_BYTES = 512 * 1024**2
#: Ray 2.60's raylet gives its dashboard agent a fixed 15 s to report its ports; on a loaded machine the
#: agent's imports alone can take longer, and the node aborts at once. A node that exits while starting is
#: started again with fresh ports (the agent's imports then hit a warm page cache) before the error is raised.
START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1
#: The node processes this process started, by pid: reaped here when they end (no zombies in a long-lived
#: triggerer), and polled rather than looked up by pid while they live.
_children: dict[int, subprocess.Popen[bytes]] = {}


class RayNodeError(RuntimeError):
    """A node did not start or stop as asked; the message carries the tail of its log."""


class NodeExitedWhileStarting(RayNodeError):
    """The node's process ended before the node registered with the GCS."""


@dataclass(frozen=True)
class NodeSpec:
    """What one node offers: its resources and labels (``head`` nodes also run the GCS)."""

    num_cpus: int
    num_gpus: int = 0
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"num_cpus={self.num_cpus} num_gpus={self.num_gpus}: both must be >= 0")
        for key, value in self.labels.items():
            if "," in key + value or "=" in key + value:
                raise ValueError(f"label {key!r}={value!r}: keys and values may not contain ',' or '='")

    def args(self) -> list[str]:
        out = [f"--num-cpus={self.num_cpus}", f"--num-gpus={self.num_gpus}"]
        if self.resources:
            out.append(f"--resources={json.dumps(self.resources)}")
        if self.labels:
            out.append("--labels=" + ",".join(f"{k}={v}" for k, v in self.labels.items()))
        return out


@dataclass(frozen=True)
class NodeRecord:
    """A started node as JSON can hold it (the pool service keeps these in its state file)."""

    name: str
    node_id: str
    pid: int
    started_at: float  # the process's start time (psutil), which tells a reused pid apart
    log_path: str
    spec: NodeSpec
    head: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeRecord:
        raw = dict(data)
        raw["spec"] = NodeSpec(**raw["spec"])
        return cls(**raw)


@dataclass(frozen=True)
class NodeSettings:
    """Where and how nodes run: the cluster-wide part of every ``ray start`` command."""

    temp_dir: Path
    token_path: Path
    #: The address every server binds to and the node registers with; None lets Ray pick the address this
    #: host reaches the cluster from (a driver pod's own node).
    host: str | None = LOOPBACK
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES
    drain_timeout_s: float = 10.0
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(str(self.temp_dir)) > MAX_TEMP_DIR_LEN:
            raise ValueError(
                f"temp_dir {str(self.temp_dir)!r} is {len(str(self.temp_dir))} characters; Ray's unix socket "
                f"paths under it overflow the 107-byte limit. Pass a temp_dir of at most {MAX_TEMP_DIR_LEN} "
                "characters, e.g. tempfile.mkdtemp(prefix='rl-', dir='/tmp')."
            )

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The node's environment: token auth on whatever the caller inherited (``RAY_AUTH_MODE=disabled``
        included), the token from this cluster's file, no inherited cluster address."""
        source = os.environ if base is None else base
        env = {k: v for k, v in source.items() if k not in (ADDRESS_ENV, AUTH_TOKEN_ENV, AUTH_MODE_ENV)}
        env[AUTH_MODE_ENV] = "token"
        env[AUTH_TOKEN_PATH_ENV] = str(self.token_path)
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Notice a killed node in ~3 s instead of ~30 s: tests and the autoscaler see node loss promptly.
        env.setdefault("RAY_health_check_period_ms", "1000")
        env.setdefault("RAY_health_check_timeout_ms", "1000")
        env.setdefault("RAY_health_check_failure_threshold", "3")
        # How long a SIGTERMed node waits for its running tasks (Ray's default is 30 s).
        env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = str(self.drain_timeout_s)
        env.update(self.extra_env)
        return env

    def command(self, role_args: Sequence[str], node_name: str) -> list[str]:
        """The exec array for one node: every port free-picked, every server on ``host``."""
        where = [f"--node-ip-address={self.host}"] if self.host else []
        return [
            sys.executable,
            "-m",
            "mlk8s.local_ray.ray_start",
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
            *where,
        ]


def log_tail(path: str | Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM this node when the thread that started it ends (the driver)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def is_alive(record: NodeRecord) -> bool:
    """The node's own process still runs (not a zombie, not another process that got its pid)."""
    import psutil

    child = _children.get(record.pid)
    if child is not None:
        return child.poll() is None
    try:
        proc = psutil.Process(record.pid)
        return bool(proc.create_time() == record.started_at and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _wait_registered(
    gcs: GcsClient, node_name: str, process: subprocess.Popen[bytes], log_path: Path, deadline: float
) -> GcsNode | None:
    """The node as the GCS lists it once registered; None if its process exited first."""
    while True:
        if process.poll() is not None:
            return None
        with contextlib.suppress(GcsError):  # the GCS itself may still be starting (a head node)
            match = [node for node in gcs.nodes(timeout_s=5.0) if node.name == node_name]
            if match:
                return match[0]
        if time.monotonic() > deadline:
            kill_group(process.pid)
            raise RayNodeError(
                f"ray node {node_name} did not register with the GCS at {gcs.address} in time:\n" + log_tail(log_path)
            )
        time.sleep(0.5)


def start_node(
    settings: NodeSettings,
    name: str,
    spec: NodeSpec,
    role_args: Sequence[str],
    gcs: GcsClient,
    *,
    head: bool = False,
    timeout_s: float = 90.0,
    die_with_parent: bool = False,
    on_spawn: Callable[[NodeRecord], None] | None = None,
) -> NodeRecord:
    """Start one node and wait until the GCS lists it; ``role_args`` say head (``--head --port=...``) or not
    (``--address=...``). ``die_with_parent`` ties the node to the calling thread (a driver's own node).
    ``on_spawn`` gets the node's record (``node_id`` still empty) as soon as its process runs, before the wait:
    a caller that may be SIGKILLed while it waits writes it down, so the next process can end the node.

    Raises :class:`NodeExitedWhileStarting` when the node's process ends before it registers (see
    :func:`retry_start`), :class:`RayNodeError` when it does not register within ``timeout_s``.
    """
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.temp_dir / f"{name}.log"
    node_name = f"mlk8s-{name}-{secrets.token_hex(3)}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            settings.command([*role_args, *spec.args()], node_name),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=settings.env(),
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    started = _process_start_time(process.pid) or 0.0
    try:
        if on_spawn is not None:
            on_spawn(NodeRecord(name, "", process.pid, started, str(log_path), spec, head))
        node = _wait_registered(gcs, node_name, process, log_path, time.monotonic() + timeout_s)
    except BaseException:
        # Interrupted before it registered (a SIGTERM the task runner raises as an exception, a Ctrl-C): no record
        # of this node will be written, so nothing could stop it later. It is its own session: end it here.
        kill_group(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        raise
    if node is None:
        kill_group(process.pid)
        raise NodeExitedWhileStarting(
            f"ray node {name} exited with code {process.returncode} while starting:\n" + log_tail(log_path)
        )
    _children[process.pid] = process
    return NodeRecord(name, node.node_id, process.pid, started, str(log_path), spec, head)


def retry_start(start: Callable[[], T], name: str) -> T:
    """Call ``start`` (one node start, fresh ports each time) up to :data:`START_ATTEMPTS` times while the node
    exits during its start-up; any other error, and the last one, propagate."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(START_ATTEMPTS),
        retry=tenacity.retry_if_exception_type(NodeExitedWhileStarting),
        before_sleep=lambda state: logger.warning(
            "ray node %s exited while starting (attempt %d of %d); starting it again",
            name,
            state.attempt_number,
            START_ATTEMPTS,
        ),
        reraise=True,
    )
    return retrying(start)


def kill_group(pid: int) -> None:
    """SIGKILL what is left of a node's process group (its raylet, GCS, Ray workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def wait_dead(record: NodeRecord, timeout_s: float) -> bool:
    """Wait for the node's process to end (reaping it when this process started it); True when it has."""
    child = _children.get(record.pid)
    if child is not None:
        try:
            child.wait(timeout=max(0.1, timeout_s))
        except subprocess.TimeoutExpired:
            return False
        _children.pop(record.pid, None)
        return True
    deadline = time.monotonic() + timeout_s
    while is_alive(record):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_node(record: NodeRecord, *, grace_s: float, force: bool = False) -> None:
    """SIGTERM lets Ray drain the node (running tasks finish, up to the drain timeout); ``force`` kills it.

    Either way the node's whole process group is SIGKILLed at the end, so nothing of it is left behind.
    """
    if not force and is_alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        if not wait_dead(record, grace_s):
            logger.warning("ray node %s did not stop within %.0fs; killing it", record.name, grace_s)
    # The node's Ray processes share its group even after the `ray start` process itself has gone.
    kill_group(record.pid)
    wait_dead(record, 10.0)
