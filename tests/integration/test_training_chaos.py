"""Chaos: the training CLI is killed (SIGKILL and SIGTERM) at random points and relaunched until it finishes;
its final weights must be byte-identical to those of an uninterrupted run with the same seed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK
from tests import tally

pytestmark = pytest.mark.slow

COMMON = [
    "--epochs",
    "10",
    "--seed",
    "11",
    "--checkpoint-every-steps",
    "40",
    "--heartbeat-seconds",
    "0",
    "--log-every-steps",
    "3",
    "--termination-grace-seconds",
    "20",
    "--keep-last",
    "2",
    "--task-option",
    "hidden=128",
    "--task-option",
    "shifts=0",
]


class Run:
    """One CLI process whose stderr is drained on a thread so it can never block on a full pipe."""

    def __init__(self, tmp: Path, ckpt: Path, out: Path, xcom: Path) -> None:
        env = dict(os.environ, MLK8S_XCOM_DIR=str(xcom))
        cmd = [sys.executable, "-m", "mlk8s.training", "--checkpoint-uri", str(ckpt), "--output-uri", str(out)]
        self.proc = subprocess.Popen(cmd + COMMON, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
        self.lines: list[str] = []
        self.started = threading.Event()
        self.start_step = 0
        self.total_steps = 0
        self.step = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if match := re.search(r"mlk8s: training started step=(\d+) total_steps=(\d+)", line):
                self.start_step, self.total_steps = int(match.group(1)), int(match.group(2))
                self.step = self.start_step
                self.started.set()
            elif match := re.search(r"mlk8s: progress .* step=(\d+)/", line):
                self.step = int(match.group(1))
        self.started.set()

    def wait(self) -> int:
        rc = self.proc.wait(timeout=120)
        self._reader.join(timeout=10)
        return rc

    def log(self) -> str:
        return "".join(self.lines)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_and_relaunched_training_matches_uninterrupted_run(tmp_path: Path) -> None:
    # The uninterrupted reference runs alongside the chaos (timing cannot change the arithmetic).
    baseline = Run(tmp_path, tmp_path / "ckpt-a", tmp_path / "out-a", tmp_path / "xcom-a")

    rng = random.Random(20261129)
    plan = [signal.SIGKILL, signal.SIGTERM] * 3
    rng.shuffle(plan)
    ckpt, out, xcom = tmp_path / "ckpt-b", tmp_path / "out-b", tmp_path / "xcom-b"
    interrupted = 0
    finished = False
    logs: list[str] = []
    for sig in plan:
        run = Run(tmp_path, ckpt, out, xcom)
        assert run.started.wait(timeout=120), run.log()
        # A random step in the first two thirds of what is left, plus jitter so signals also land inside
        # steps and background checkpoint writes, not only at log lines.
        left = run.total_steps - run.start_step
        target = run.start_step + rng.randint(1, max(1, left * 2 // 3))
        while run.step < target and run.proc.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.02))
        run.proc.send_signal(sig)
        rc = run.wait()
        logs.append(run.log())
        if rc == EXIT_OK:  # it finished before the signal landed
            finished = True
            break
        expected = -signal.SIGKILL if sig == signal.SIGKILL else EXIT_INTERRUPTED
        assert tally.held(tally.FAULT, f"{sig.name} mid-training", rc == expected), (
            f"{sig!r} gave exit {rc}\n{run.log()}"
        )
        if sig == signal.SIGTERM:
            assert "mlk8s: interrupted step=" in run.log()
        interrupted += 1
        print(f"{sig.name} near step {target} (started at {run.start_step}): exit {rc}")

    attempts = 0
    while not finished:
        attempts += 1
        assert attempts <= 3, "the job did not finish after the chaos stopped"
        run = Run(tmp_path, ckpt, out, xcom)
        rc = run.wait()
        logs.append(run.log())
        assert rc in (EXIT_OK, EXIT_INTERRUPTED), run.log()
        finished = rc == EXIT_OK

    assert baseline.wait() == EXIT_OK, baseline.log()
    assert interrupted >= 3, "too few signals landed mid-training to call this chaos"
    assert sha(out / "model.safetensors") == sha(tmp_path / "out-a" / "model.safetensors")
    info = json.loads((out / "model.json").read_text())
    assert info["weights_sha256"] == sha(out / "model.safetensors")
    assert info["resumes"] >= interrupted
    result = json.loads((xcom / "return.json").read_text())
    assert result["model_uri"] == str(out / "model.safetensors")
    assert result["checkpoint_uri"].startswith(str(ckpt))
    assert result["steps"] == info["steps"]
    resumed = [line for text in logs for line in text.splitlines() if "mlk8s: resumed from step=" in line]
    assert len(resumed) >= interrupted
    # The history travels in checkpoints: a relaunch killed before its first commit leaves no trace in it.
    assert 1 <= result["history"]["resumes_total"] <= info["resumes"]
    print("tally:", tally.counts())
