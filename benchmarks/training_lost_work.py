"""Lost work: training steps redone after a SIGTERM (target 0) and after a SIGKILL (target: at most one
checkpoint interval).

Each trial starts the CLI on a fresh checkpoint location, signals it at a seeded random step, relaunches it
and reads where the relaunch resumed. Steps redone are measured two ways: from the killed process's own log
(it logs every step; for SIGTERM its final "interrupted step=N" line is exact, for SIGKILL the last logged
step is a lower bound) and from the relaunch's "work_lost_steps" (the heartbeat, written every step here).
Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

INTERVAL = 100
TRIALS_PER_SIGNAL = 2
FLAGS = [
    "--epochs",
    "20",
    "--checkpoint-every-steps",
    str(INTERVAL),
    "--checkpoint-every-epochs",
    "0",
    "--heartbeat-seconds",
    "0",
    "--log-every-steps",
    "1",
]


class Run:
    def __init__(self, root: Path) -> None:
        env = dict(os.environ, MLK8S_XCOM_DIR=str(root / "xcom"))
        cmd = [sys.executable, "-m", "mlk8s.training", "--checkpoint-uri", str(root / "ckpt")]
        cmd += ["--output-uri", str(root / "out"), *FLAGS]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
        self.step = -1
        self.started = threading.Event()
        self.resumed: tuple[int, int] | None = None
        self.interrupted_at: int | None = None
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if m := re.search(r"mlk8s: training started step=(\d+)", line):
                self.step = int(m.group(1))
                self.started.set()
            elif m := re.search(r"mlk8s: progress .* step=(\d+)/", line):
                self.step = int(m.group(1))
            elif m := re.search(r"mlk8s: resumed from step=(\d+) work_lost_steps=(\d+)", line):
                self.resumed = (int(m.group(1)), int(m.group(2)))
            elif m := re.search(r"mlk8s: interrupted step=(\d+)", line):
                self.interrupted_at = int(m.group(1))
        self.started.set()

    def finish(self) -> int:
        rc = self.proc.wait(timeout=300)
        self.reader.join(timeout=10)
        return rc


def trial(root: Path, sig: signal.Signals, target: int) -> dict[str, int | None]:
    first = Run(root)
    first.started.wait(timeout=300)
    while first.step < target and first.proc.poll() is None:
        time.sleep(0.001)
    first.proc.send_signal(sig)
    rc = first.finish()
    reached = first.interrupted_at if first.interrupted_at is not None else first.step
    second = Run(root)
    second.started.wait(timeout=300)
    second.proc.kill()
    second.finish()
    assert second.resumed is not None, "the relaunch did not report a resume"
    resumed_step, reported = second.resumed
    return {
        "signal_step_target": target,
        "exit_code": rc,
        "steps_done_by_killed_process": reached,
        "resumed_from_step": resumed_step,
        "redone_steps_from_log": reached - resumed_step,
        "work_lost_steps_reported": reported,
    }


def main() -> int:
    rng = random.Random(7)
    results: dict[str, list[dict[str, int | None]]] = {"SIGTERM": [], "SIGKILL": []}
    with tempfile.TemporaryDirectory(prefix="bench-lost-") as tmp:
        for i in range(TRIALS_PER_SIGNAL):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                # Mid-interval on purpose: the worst place for a kill is just before the next checkpoint.
                target = rng.randint(1, 7) * INTERVAL + rng.randint(INTERVAL // 4, INTERVAL - 5)
                results[sig.name].append(trial(Path(tmp) / f"{sig.name}-{i}", sig, target))

    def worst(name: str) -> int:
        rows = results[name]
        return max(max(int(r["redone_steps_from_log"] or 0), int(r["work_lost_steps_reported"] or 0)) for r in rows)

    term, kill = worst("SIGTERM"), worst("SIGKILL")
    report = {
        "figure": "training lost work",
        "measured_sigterm_redone_steps_max": term,
        "measured_sigkill_redone_steps_max": kill,
        "baseline_checkpoint_interval_steps": INTERVAL,
        "ratio_sigkill_lost_to_interval": kill / INTERVAL,
        "target_sigterm_redone_steps": 0,
        "target_sigkill_redone_steps_at_most": INTERVAL,
        "trials": results,
        "ok": term == 0 and kill <= INTERVAL,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
