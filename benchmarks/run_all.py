"""`make bench`: run every benchmark script in this folder, one after the other, and summarise.

Each script prints one JSON object (its figures, the baseline measured in the same run, the ratio and the
target) and exits non-zero when its target is missed. Generators (gen_*, *_traces) are not benchmarks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run_all.py", "gen_documents.py", "scaling_traces.py"}


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)
    summary = {}
    for script in scripts:
        print(f"==> {script.name}", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        took = time.monotonic() - started
        print(proc.stdout.strip() or proc.stderr.strip()[-2000:], flush=True)
        summary[script.name] = {"ok": proc.returncode == 0, "seconds": round(took, 1)}
    print(json.dumps(summary, indent=2))
    return 0 if all(v["ok"] for v in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
