"""The local pool service's command line and its handle, where no pool runs: clear errors, nothing started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlk8s.local_ray.pool import POOL_ENV, LocalRayPool, PoolError, main


def test_a_process_finds_the_pool_through_the_documented_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POOL_ENV, raising=False)
    with pytest.raises(PoolError, match=f"set {POOL_ENV} to the pool's state dir"):
        LocalRayPool.from_env()
    monkeypatch.setenv(POOL_ENV, str(tmp_path))
    assert LocalRayPool.from_env().state_dir == tmp_path
    assert LocalRayPool.from_env(tmp_path / "other").state_dir == tmp_path / "other"  # the argument wins


def test_no_pool_is_a_clear_error_for_changes_and_none_for_status(tmp_path: Path) -> None:
    pool = LocalRayPool(tmp_path)
    assert pool.info() is None
    with pytest.raises(
        PoolError, match=r"no local Ray pool runs from .*: start it with `python -m mlk8s.local_ray.pool"
    ):
        pool.add_worker(1)
    assert pool.stop() is False


def test_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(POOL_ENV, raising=False)
    assert main(["status"]) == 2
    assert "--state-dir" in capsys.readouterr().err
    assert main(["start", "--state-dir", str(tmp_path), "--head-cpus", "-1"]) == 2
    assert "--head-cpus=-1" in capsys.readouterr().err
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    assert json.loads(capsys.readouterr().out) == {"state_dir": str(tmp_path), "running": False}
    assert main(["stop", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["stopped"] is False
