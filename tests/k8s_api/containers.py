"""One running container of the process kubelet: its process tree, its output, signals and exec.

A container is started as ``nsenter --net=<pod netns> -- unshare --mount --pid --uts --fork --kill-child
-- python container_init.py <spec>`` (exec arrays only): the pod's network namespace, the container's own
mount, PID and UTS namespaces, and :mod:`tests.k8s_api.container_init` as its first process, which builds the
root filesystem and execs the command as the container's PID 1. Killing PID 1 ends every process of the
container (the kernel empties its PID namespace), so nothing outlives the container. Signals go to PID 1
itself, where, as in any container, a signal without a handler is ignored (except SIGKILL from outside).

``exec`` runs ``nsenter --target <PID 1> --mount --uts --pid --root --wd`` with the container's user and
environment: a command sees the container's files, processes and network, as ``kubectl exec`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

INIT = str(Path(__file__).with_name("container_init.py"))


@dataclass
class ContainerSpec:
    """Everything the container's first process needs (written to ``spec.json``, mode 0600: it holds env)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    groups: list[int]
    hostname: str
    working_dir: str
    mounts: list[dict[str, object]]
    read_only_root: bool = False
    traversable: list[str] = field(default_factory=list)


class StartError(RuntimeError):
    """The runtime could not start the container (exit 128, reason StartError)."""


class ContainerProcess:
    """A started container; ``on_line`` receives each line it writes to stdout or stderr."""

    def __init__(self, directory: Path, netns_path: str, spec: ContainerSpec, on_line: Callable[[str], None]) -> None:
        self.directory = directory
        self.spec = spec
        self.netns_path = netns_path
        self._on_line = on_line
        self.process: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None
        self.started_at = 0.0
        self._reader: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start it; returns once the command is exec'd, raises :class:`StartError` if it could not be."""
        for sub in ("upper", "work", "rootfs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        status_r, status_w = os.pipe()
        spec = {
            "argv": self.spec.argv,
            "env": self.spec.env,
            "uid": self.spec.uid,
            "gid": self.spec.gid,
            "groups": self.spec.groups,
            "hostname": self.spec.hostname,
            "working_dir": self.spec.working_dir,
            "mounts": self.spec.mounts,
            "read_only_root": self.spec.read_only_root,
            "traversable": self.spec.traversable,
            "rootfs": str(self.directory / "rootfs"),
            "upper": str(self.directory / "upper"),
            "work": str(self.directory / "work"),
            "status_fd": status_w,
        }
        spec_path = self.directory / "spec.json"
        fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(spec, fh)
        argv = [
            "nsenter",
            f"--net={self.netns_path}",
            "--",
            "unshare",
            "--mount",
            "--pid",
            "--uts",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-S",
            "-I",
            INIT,
            str(spec_path),
        ]
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(status_w,),
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", os.defpath)},
            )
        finally:
            os.close(status_w)
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.spec.name}", daemon=True)
        self._reader.start()
        try:
            line = self._read_status(status_r, timeout_s)
        finally:
            os.close(status_r)
        if not line.startswith("exec"):
            self.kill()
            raise StartError(line.removeprefix("error ").strip() or "container init exited before exec")
        self.started_at = time.time()
        self.init_pid = self._find_init_pid()

    def _read_status(self, fd: int, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        data = b""
        os.set_blocking(fd, False)
        while b"\n" not in data and time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
                if chunk:
                    data += chunk
                    continue
                if self.process is not None and self.process.poll() is not None:
                    break
            except BlockingIOError:
                pass
            time.sleep(0.01)
        if b"\n" not in data and not data:
            return f"error the container did not start within {timeout_s:.0f}s"
        return data.decode(errors="replace").splitlines()[0]

    def _find_init_pid(self) -> int | None:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for _ in range(200):
            with contextlib.suppress(OSError):
                pids = children.read_text().split()
                if pids:
                    return int(pids[0])
            if self.process.poll() is not None:
                return None
            time.sleep(0.01)
        return None

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self._on_line(raw.decode(errors="replace").rstrip("\n"))

    # --- lifecycle --------------------------------------------------------------------------------------------

    def poll(self) -> int | None:
        """The exit code as the runtime reports it (128 + signal for a killed PID 1), or None while running."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            return None
        if self._reader is not None:
            self._reader.join(timeout=2)
        return 128 - code if code < 0 else code

    def signal(self, sig: int) -> None:
        if self.init_pid is not None and self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, sig)

    def kill(self) -> None:
        """SIGKILL PID 1 (the kernel then kills the whole container) and reap the launcher."""
        if self.process is None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                return code
            time.sleep(0.05)
        return self.poll()

    # --- exec -------------------------------------------------------------------------------------------------

    def exec_argv(self, command: Sequence[str]) -> list[str]:
        """The host command line that runs ``command`` inside this container as its user."""
        if self.init_pid is None or self.poll() is not None:
            raise StartError(f"container {self.spec.name} is not running")
        return [
            "nsenter",
            f"--target={self.init_pid}",
            "--mount",
            "--uts",
            "--pid",
            "--net",
            "--root",
            "--wd",
            f"--setgid={self.spec.gid}",
            f"--setuid={self.spec.uid}",
            "--",
            *command,
        ]

    def exec_env(self) -> dict[str, str]:
        return dict(self.spec.env)
