"""Detached component processes, recorded by pid and start time, and stopped by pid.

A record holds the pid *and* the process's start time, so a pid the kernel reused for someone else's process
is never signalled. Each component runs in its own session (process group); stopping it signals that group,
then any descendant that left it (the local backend runs each "pod" in a session of its own), SIGTERM first
and SIGKILL after the grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

_START_TIME_SLACK_S = 0.05


@dataclass(frozen=True)
class Record:
    name: str
    pid: int
    started: float  # psutil's create_time of the process
    argv: list[str]
    log: str


def _record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid.json"


def read(run_dir: Path, name: str) -> Record | None:
    try:
        return Record(**json.loads(_record_path(run_dir, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def alive(record: Record | None) -> bool:
    """The recorded process still runs (and is the same process, not a reused pid)."""
    if record is None:
        return False
    try:
        proc = psutil.Process(record.pid)
        return abs(proc.create_time() - record.started) < _START_TIME_SLACK_S and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start(run_dir: Path, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> Record:
    """Start ``argv`` detached (own session, stdin closed, output appended to ``log``) and record it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    record = Record(name, proc.pid, psutil.Process(proc.pid).create_time(), list(argv), str(log))
    run_dir.mkdir(parents=True, exist_ok=True)
    _record_path(run_dir, name).write_text(json.dumps(asdict(record)))
    return record


def exited(record: Record) -> int | None:
    """The exit code if the process ended (None while it runs, or when it is not our child any more)."""
    try:
        pid, status = os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:
        return None if alive(record) else -1
    return None if pid == 0 else os.waitstatus_to_exitcode(status)


def _tree(record: Record) -> list[psutil.Process]:
    if not alive(record):
        return []
    try:
        root = psutil.Process(record.pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def stop(run_dir: Path, records: Iterable[Record], grace_s: float) -> list[str]:
    """Stop these components together; returns what needed SIGKILL. Records are removed."""
    records = list(records)
    trees = {r.name: _tree(r) for r in records}
    for record in records:
        if trees[record.name]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGTERM)
        for proc in trees[record.name][1:]:  # descendants in other sessions (local "pods") get it too
            with contextlib.suppress(psutil.Error):
                if os.getpgid(proc.pid) != record.pid:
                    proc.terminate()
    everything = [p for tree in trees.values() for p in tree]
    _, left = psutil.wait_procs(everything, timeout=grace_s)
    killed = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            killed.append(f"{proc.pid} ({' '.join(proc.cmdline()[:3])})")
            proc.kill()
    psutil.wait_procs(left, timeout=10)
    for record in records:
        late = _session_members(record)  # started after the snapshot (a task launched while stopping)
        for proc in late:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(late, timeout=10)
        _record_path(run_dir, record.name).unlink(missing_ok=True)
    return killed


def _session_members(record: Record) -> list[psutil.Process]:
    """Processes still in the component's session. None if its pid now belongs to another process: then
    the session id names someone else's session."""
    with contextlib.suppress(psutil.Error):
        if abs(psutil.Process(record.pid).create_time() - record.started) >= _START_TIME_SLACK_S:
            return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(proc.pid) == record.pid and proc.create_time() >= record.started - _START_TIME_SLACK_S:
                members.append(proc)
    return members


def log_tail(path: str | Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
