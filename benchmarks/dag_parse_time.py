"""Parse time of each DAG file, against a trivial DAG file measured the same way as the baseline.

Two figures per file, each the median of several fresh interpreters:

* ``cold_s``: the first parse in a fresh interpreter, imports included (what ``python dags/x.py`` costs);
* ``warm_s``: a second parse in the same interpreter, with the modules it imports already loaded. This is what
  Airflow's DAG processor pays on every re-parse: it pre-imports a DAG file's modules before forking the
  parsing process (``[dag_processor] parsing_pre_import_modules``, on by default).

The cold figure is dominated by importing KubernetesPodOperator (the kubernetes and kubernetes_asyncio clients),
which every KPO-based DAG pays once per processor. The target: warm parse within 0.5 s of the trivial DAG.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = 3
TARGET_EXTRA_S = 0.5

PROBE = r"""
import sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(sys.argv[1])
t2 = time.perf_counter()
assert not bag.import_errors, bag.import_errors
bag = DagBag(sys.argv[1])
t3 = time.perf_counter()
print(f"{t2 - t1:.4f} {t3 - t2:.4f}")
"""

TRIVIAL = """
import pendulum
from airflow.sdk import dag, task

@dag(schedule=None, start_date=pendulum.datetime(2025, 1, 1), tags=["baseline"])
def trivial():
    task(lambda: None, task_id="noop")()

trivial()
"""


def parse_seconds(path: Path) -> tuple[float, float]:
    """(cold, warm) parse seconds, medians over fresh interpreters."""
    cold, warm = [], []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
        c, w = out.stdout.split()[-2:]
        cold.append(float(c))
        warm.append(float(w))
    return statistics.median(cold), statistics.median(warm)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        trivial = Path(tmp) / "trivial.py"
        trivial.write_text(TRIVIAL)
        base_cold, base_warm = parse_seconds(trivial)
    files = {}
    ok = True
    for path in sorted((REPO / "dags").glob("*.py")):
        cold, warm = parse_seconds(path)
        files[path.name] = {
            "cold_s": round(cold, 3),
            "warm_s": round(warm, 3),
            "warm_extra_over_trivial_s": round(warm - base_warm, 3),
        }
        ok &= warm - base_warm <= TARGET_EXTRA_S
    report = {
        "baseline_trivial_dag": {"cold_s": round(base_cold, 3), "warm_s": round(base_warm, 3)},
        "files": files,
        "target_warm_extra_s": TARGET_EXTRA_S,
        "ok": ok,
    }
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
