"""The pod contract: the result file is written whole, and an error is one line (a traceback only in debug)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlk8s import pod_contract


def test_the_result_lands_where_the_environment_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pod_contract.XCOM_DIR_ENV, str(tmp_path / "x"))
    path = pod_contract.write_result({"status": "done", "steps": 3})
    assert path == tmp_path / "x" / pod_contract.RESULT_FILE
    assert json.loads(path.read_text()) == {"status": "done", "steps": 3}
    assert os.listdir(tmp_path / "x") == [pod_contract.RESULT_FILE]


def test_an_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        code = pod_contract.report_error("prog", "--data: bad\n  row 3", pod_contract.EXIT_USAGE)
    err = capsys.readouterr().err
    assert code == 2 and err == "prog: error: --data: bad row 3\n"


def test_debug_adds_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        pod_contract.report_error("prog", "bad", pod_contract.EXIT_ERROR, debug=True)
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("prog: error: bad\n")
