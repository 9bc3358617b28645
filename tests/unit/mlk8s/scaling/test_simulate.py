"""The simulator's command line: bad input is a usage error naming the flag, and the JSON it prints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mlk8s.scaling import TRACE_HEADER
from mlk8s.scaling.simulate import main


def write(tmp_path: Path, body: str, header: str = ",".join(TRACE_HEADER)) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + body)
    return path


def test_cli_reports_bad_input_as_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "0,5,1,0\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--trace", str(path), "--cpu-min", "3", "--cpu-max", "2"])
    assert exit_.value.code == 2
    assert "max_workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--trace", str(path), "--pod-start-s", "-1"])
    assert "--pod-start-s" in capsys.readouterr().err


def test_cli_prints_one_json_object_with_every_documented_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "0,30,1,0\n0,30,1,0\n40,60,2,1\n")
    assert main(["--trace", str(path), "--pod-start-s", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks"] == 3 and out["pod_start_s"] == 20
    assert set(out["policies"]) == {"policy", "fixed_pool", "idle_timeout"}
    for figures in out["policies"].values():
        assert set(figures) >= {"worker_hours", "gpu_worker_hours", "queue_wait_s", "scale_events"}
        assert set(figures["queue_wait_s"]) == {"p50", "p95", "max"}
        assert all(math.isfinite(v) for v in figures["queue_wait_s"].values())
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for field in ("--trace", "--pod-start-s", "worker_hours", "gpu_worker_hours", "p95", "scale_events"):
        assert field in help_text
