"""The GPU checks' driver: without a GPU run.sh passes in seconds with every check skipped and the reason; a check's
last JSON object is found however it is printed; a failing, crashing or hanging check becomes an error entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu import checks

RUN_SH = Path(checks.__file__).resolve().parent / "run.sh"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(
    _has_cuda(), reason="with a GPU run.sh runs the real checks (minutes): a benchmark, not a unit test"
)
def test_run_sh_without_a_gpu_skips_every_check_with_the_reason_and_passes() -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(RUN_SH)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["gpu"] is None
    assert report["ok"] is True
    assert set(report["checks"]) == {c.name for c in checks.CHECKS}
    for name, entry in report["checks"].items():
        assert entry["skipped"].startswith("no CUDA GPU: "), name
        assert "torch.cuda.is_available() is False" in entry["skipped"]


def test_the_checks_fit_in_eight_minutes() -> None:
    # The driver stops starting checks when the budget is spent; a timed-out check gets GRACE_S more to clean up.
    assert checks.BUDGET_S + checks.GRACE_S < 8 * 60 - 20  # 20 s for start-up and the GPU probe
    assert all(c.timeout_s < checks.BUDGET_S for c in checks.CHECKS)


@pytest.mark.parametrize(
    "stdout",
    [
        'log line\n{"a": 1}\n{"ratio_vs_single_process": 0.93, "rows": 5}\n',
        'progress...\n{\n  "ratio_vs_single_process": 0.93,\n  "rows": 5\n}\n',
        '{"ratio_vs_single_process": 0.93, "rows": 5}\nnot json {\n',
    ],
)
def test_the_last_json_object_is_found_on_one_line_or_indented(stdout: str) -> None:
    assert checks.last_json_object(stdout) == {"ratio_vs_single_process": 0.93, "rows": 5}


def test_no_json_object_is_none() -> None:
    assert checks.last_json_object("Traceback ...\n{ broken\n") is None
    assert checks.last_json_object("") is None


@pytest.mark.parametrize(
    ("found", "ok"),
    [
        ({"ratio_vs_single_process": 0.95}, True),
        ({"ratio_vs_single_process": 0.9}, True),
        ({"ratio_vs_single_process": 0.5}, False),
        ({"error": "row counts differ"}, False),
        ({"rows": 10}, False),
    ],
)
def test_embeddings_are_gated_on_the_ratio_vs_a_single_process(found: dict[str, object], ok: bool) -> None:
    entry = checks.judge_embeddings(found)
    assert entry["ok"] is ok
    assert entry["target_ratio_at_least"] == checks.TARGET_EMBED_RATIO
    if not ok:
        assert entry.get("error") or entry["ratio_vs_single_process"] < checks.TARGET_EMBED_RATIO


def _check(code: str, timeout_s: float = 60.0) -> checks.Check:
    return checks.Check("fake", timeout_s, lambda _: [sys.executable, "-c", code], checks._as_reported)


def test_a_check_that_prints_its_report_keeps_it() -> None:
    entry = checks.run_check(
        _check('import json; print("noise"); print(json.dumps({"ok": True, "x": 1}, indent=2))'), 60
    )
    assert entry["ok"] is True and entry["x"] == 1


def test_a_check_that_crashes_is_an_error_with_its_stderr() -> None:
    entry = checks.run_check(_check("raise SystemExit('boom: no device')"), 60)
    assert entry["ok"] is False
    assert "no JSON object" in entry["error"]
    assert "boom: no device" in entry["stderr_tail"]


def test_a_check_that_claims_ok_but_exits_non_zero_is_an_error() -> None:
    entry = checks.run_check(_check('import json, sys; print(json.dumps({"ok": True})); sys.exit(3)'), 60)
    assert entry["ok"] is False and entry["error"] == "exit code 3"


def test_a_check_that_hangs_is_stopped_at_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "GRACE_S", 2.0)
    entry = checks.run_check(_check("import time; time.sleep(60)"), 1.0)
    assert entry["ok"] is False
    assert entry["error"] == "timed out after 1s"
    assert entry["seconds"] < 30


def test_the_embeddings_check_runs_the_benchmark_on_the_gpu_with_the_rows_asked_for() -> None:
    (embeddings,) = [c for c in checks.CHECKS if c.name == "embeddings"]
    cmd = embeddings.command(checks.Options(embed_rows=123))
    assert cmd[1].endswith("benchmarks/preprocessing_embeddings.py")
    assert cmd[2:] == ["--rows", "123", "--device", "cuda"]
