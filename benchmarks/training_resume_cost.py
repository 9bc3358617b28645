"""Resume cost: time from process start to the first resumed training step, vs a cold start to its first step.

The resumed runs start from a copy of the same mid-training checkpoint (taken by a SIGTERM); cold runs start
on an empty location. Runs alternate; medians are compared. Target: a resume costs at most 1.25x a cold start
(both are dominated by importing torch; what a resume adds is reading, verifying and restoring the state).
The gate is best-of-N (each kind's fastest run: start-up is mostly imports, which a busy machine stretches
at random); the ratio of medians and the time spent loading, verifying and restoring the checkpoint (from the
"claimed" to the "training started" log line) are reported beside it.
Prints one JSON object; exits 1 if the target is missed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_RATIO = 1.25
TRIALS = 4
FLAGS = ["--epochs", "20", "--log-every-steps", "1"]


def launch(root: Path) -> tuple[subprocess.Popen[str], dict[str, float], threading.Thread]:
    env = dict(os.environ, MLK8S_XCOM_DIR=str(root / "xcom"))
    cmd = [sys.executable, "-m", "mlk8s.training", "--checkpoint-uri", str(root / "ckpt")]
    cmd += ["--output-uri", str(root / "out"), *FLAGS]
    marks: dict[str, float] = {"spawned": time.perf_counter()}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "mlk8s: first step done" in line and "first_step" not in marks:
                marks["first_step"] = time.perf_counter()
            if "mlk8s: resumed from" in line:
                marks["resumed"] = 1.0
            if "mlk8s: claimed checkpoint generation" in line:
                marks["claimed"] = time.perf_counter()
            if "mlk8s: training started" in line:
                marks["started"] = time.perf_counter()
            if "mlk8s: progress" in line and "step=400/" in line:
                marks["step400"] = time.perf_counter()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return proc, marks, reader


def time_to_first_step(root: Path, *, expect_resume: bool) -> tuple[float, float]:
    """(process start to first step, claim to training start: the part a resume adds to)."""
    proc, marks, reader = launch(root)
    while "first_step" not in marks and proc.poll() is None:
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    reader.join(timeout=10)
    assert "first_step" in marks, "the process never reached a training step"
    assert ("resumed" in marks) == expect_resume
    return marks["first_step"] - marks["spawned"], marks["started"] - marks["claimed"]


def main() -> int:
    cold: list[float] = []
    resumed: list[float] = []
    cold_restore: list[float] = []
    resumed_restore: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        template = Path(tmp) / "template"
        proc, marks, reader = launch(template)
        while "step400" not in marks and proc.poll() is None:
            time.sleep(0.001)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait() == 75, "the template run did not stop with an emergency checkpoint"
        reader.join(timeout=10)
        for i in range(TRIALS):
            for kind in ("cold", "resume") if i % 2 == 0 else ("resume", "cold"):
                root = Path(tmp) / f"{kind}-{i}"
                if kind == "resume":
                    shutil.copytree(template / "ckpt", root / "ckpt")
                    total, restore = time_to_first_step(root, expect_resume=True)
                    resumed.append(total)
                    resumed_restore.append(restore)
                else:
                    total, restore = time_to_first_step(root, expect_resume=False)
                    cold.append(total)
                    cold_restore.append(restore)
    ratio = min(resumed) / min(cold)
    report = {
        "figure": "training resume cost (process start to first step)",
        "measured_resume_s": min(resumed),
        "baseline_cold_start_s": min(cold),
        "ratio": ratio,
        "ratio_of_medians": statistics.median(resumed) / statistics.median(cold),
        "resume_load_verify_restore_s": statistics.median(resumed_restore),
        "cold_claim_to_start_s": statistics.median(cold_restore),
        "resume_runs_s": resumed,
        "cold_runs_s": cold,
        "target_ratio_at_most": TARGET_RATIO,
        "ok": ratio <= TARGET_RATIO,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
