"""`make bench`: run every benchmark script in this folder, one after the other, and summarise.

Each script prints one JSON object (its figures, the baseline measured in the same run, the ratio and the
target) and exits non-zero when its target is missed. Generators (gen_*, *_traces) are not benchmarks. Last,
gpu/run.sh: the GPU checks, each skipped with its reason (and passing) where there is no CUDA GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run_all.py", "gen_documents.py", "scaling_traces.py"}
GPU_CHECKS = HERE / "gpu" / "run.sh"


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)
    commands = {script.name: [sys.executable, str(script)] for script in scripts}
    commands["gpu/run.sh"] = ["bash", str(GPU_CHECKS)]
    env = dict(os.environ, PYTHON=sys.executable)  # run.sh uses the same interpreter as the scripts
    summary = {}
    for name, cmd in commands.items():
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        took = time.monotonic() - started
        print(proc.stdout.strip() or proc.stderr.strip()[-2000:], flush=True)
        summary[name] = {"ok": proc.returncode == 0, "seconds": round(took, 1)}
    print(json.dumps(summary, indent=2))
    return 0 if all(v["ok"] for v in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
