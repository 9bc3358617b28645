"""Components are recorded by pid and start time, and stopped by pid with their whole process tree."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
from local_airflow import supervisor

# A parent that starts a child in a session of its own (as the local backend starts a "pod") and ignores SIGTERM.
STUBBORN = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print(child.pid, flush=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(600)
"""


def _child_pid(log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if line.strip().isdigit()]
        if lines:
            return int(lines[0])
        time.sleep(0.1)
    raise AssertionError(f"no child pid in {log}: {log.read_text()}")


def test_start_records_and_stop_ends_the_whole_tree(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "stubborn.log"
    record = supervisor.start(tmp_path, "stubborn", [sys.executable, "-c", STUBBORN], dict(os.environ), tmp_path, log)
    child = _child_pid(log)
    assert supervisor.alive(record) and supervisor.read(tmp_path, "stubborn") == record
    killed = supervisor.stop(tmp_path, [record], grace_s=1.0)
    assert not supervisor.alive(record)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert any(str(record.pid) in k for k in killed)  # it ignored SIGTERM, so it was killed after the grace
    assert supervisor.read(tmp_path, "stubborn") is None


def test_a_reused_pid_is_never_taken_for_the_component(tmp_path: Path) -> None:
    log = tmp_path / "sleep.log"
    record = supervisor.start(
        tmp_path, "sleep", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path, log
    )
    try:
        impostor = replace(record, started=record.started - 100)  # same pid, another process's start time
        assert not supervisor.alive(impostor)
        assert supervisor.stop(tmp_path, [impostor], grace_s=1.0) == []
        assert supervisor.alive(record)  # untouched
    finally:
        supervisor.stop(tmp_path, [record], grace_s=5.0)


def test_a_missing_or_damaged_record_reads_as_none(tmp_path: Path) -> None:
    assert supervisor.read(tmp_path, "nothing") is None
    (tmp_path / "broken.pid.json").write_text("{")
    assert supervisor.read(tmp_path, "broken") is None
    assert not supervisor.alive(None)
