"""Exactly once, with real driver processes on a real local Ray cluster: SIGKILL between the part writes and
the commit, a reused attempt id killed just after its commit, two drivers racing on one run, and SIGTERM just
after the commit. The previous version stays readable and unchanged, and a partition never has two copies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from mlk8s.local_ray import LocalRayCluster
from mlk8s.preprocessing.output import read_output
from mlk8s.preprocessing.samples import write_documents

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.ray]

DRIVER = str(Path(__file__).with_name("preprocessing_driver.py"))
SPEC = '{"steps": ["html_to_text", "clean_text", "text_features", "non_empty_text"]}'
APP = "mlk8s/nightly/preprocess/-1/manual__1"


class Driver:
    def __init__(self, cluster: LocalRayCluster, tmp: Path, name: str, docs: Path, out: Path) -> None:
        self.tmp, self.name, self.docs, self.out = tmp, name, docs, out
        self.xcom = tmp / f"xcom-{name}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLK8S_TEST_"))}
        self.env.update(cluster.client_env())
        self.env.update({"MLK8S_XCOM_DIR": str(self.xcom), "MLK8S_TEST_MARK": str(tmp / "marks" / f"{name}.mark")})
        (tmp / "marks").mkdir(exist_ok=True)

    def start(self, *extra: str, version: int = 1, **env: str) -> subprocess.Popen[str]:
        argv = [sys.executable, DRIVER, "--input", str(self.docs), "--output", str(self.out), "--pipeline", SPEC]
        argv += ["--partition", "run_key=manual__1", "--txn-app-id", APP, "--txn-version", str(version), *extra]
        return subprocess.Popen(
            argv, env={**self.env, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait_for_commit_point(self, proc: subprocess.Popen[str], timeout: float = 240) -> None:
        mark = self.tmp / "marks" / f"{self.name}.mark"
        deadline = time.monotonic() + timeout
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mark.exists(), "the driver never reached its commit"

    def result(self) -> dict[str, Any]:
        return dict(json.loads((self.xcom / "return.json").read_text()))


def _ids(out: Path, version: int | None = None) -> list[str]:
    return sorted(read_output(str(out), ["id"], partition={"run_key": "manual__1"}, version=version)["id"].to_pylist())


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_documents(tmp_path / "docs.jsonl", rows=150)


def test_sigkill_between_the_part_writes_and_the_commit_leaves_the_previous_version(
    ray_cluster: LocalRayCluster, tmp_path: Path, docs: Path
) -> None:
    out = tmp_path / "table"
    first = Driver(ray_cluster, tmp_path, "first", docs, out)
    proc = first.start()
    assert proc.wait(300) == 0, proc.stdout.read() if proc.stdout else ""
    before_version, before_ids = DeltaTable(str(out)).version(), _ids(out)
    parts_before = set(Path(out).rglob("*.parquet"))

    killed = Driver(ray_cluster, tmp_path, "killed", docs, out)
    proc = killed.start(version=2, MLK8S_TEST_PAUSE_S="120")  # a retry (try 2) killed at the worst moment
    killed.wait_for_commit_point(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert set(Path(out).rglob("*.parquet")) > parts_before  # its parts were written...
    assert DeltaTable(str(out)).version() == before_version  # ...and none is visible
    assert _ids(out) == before_ids and len(before_ids) == first.result()["output_rows"]

    relaunch = Driver(ray_cluster, tmp_path, "relaunch", docs, out)
    proc = relaunch.start(version=2)
    assert proc.wait(300) == 0, proc.stdout.read() if proc.stdout else ""
    assert _ids(out) == before_ids  # one copy of the partition, not two
    assert _ids(out, version=before_version) == before_ids  # and the earlier version still reads


def test_a_reused_attempt_id_killed_just_after_its_commit_keeps_both_versions_whole(
    ray_cluster: LocalRayCluster, tmp_path: Path, docs: Path
) -> None:
    out = tmp_path / "table"
    first = Driver(ray_cluster, tmp_path, "first", docs, out)
    assert first.start("--attempt-id", "same").wait(300) == 0
    before_version, before_ids = DeltaTable(str(out)).version(), _ids(out)

    second = Driver(ray_cluster, tmp_path, "second", docs, out)
    proc = second.start("--attempt-id", "same", version=2, MLK8S_TEST_AFTER="sigkill")
    assert proc.wait(300) == -signal.SIGKILL
    assert DeltaTable(str(out)).version() == before_version + 1
    assert _ids(out) == before_ids and _ids(out, version=before_version) == before_ids


def test_two_drivers_racing_on_one_run_commit_exactly_once(
    ray_cluster: LocalRayCluster, tmp_path: Path, docs: Path
) -> None:
    out = tmp_path / "table"
    a, b = (Driver(ray_cluster, tmp_path, name, docs, out) for name in ("zombie", "relaunch"))
    procs = [d.start(MLK8S_TEST_BARRIER="2") for d in (a, b)]  # both wait at the commit for the other
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outputs
    loser = outputs[[p.returncode for p in procs].index(1)]
    assert "fenced" in loser.strip().splitlines()[-1]
    history = DeltaTable(str(out)).history()
    assert [h.get("mlk8s.txn") for h in history].count({"app_id": APP, "version": 1}) == 1
    winner = (a, b)[[p.returncode for p in procs].index(0)]
    assert len(_ids(out)) == winner.result()["output_rows"] == len(set(_ids(out)))


def test_sigterm_just_after_the_commit_and_the_relaunch_returns_the_same_result_at_once(
    ray_cluster: LocalRayCluster, tmp_path: Path, docs: Path
) -> None:
    out = tmp_path / "table"
    evicted = Driver(ray_cluster, tmp_path, "evicted", docs, out)
    proc = evicted.start(MLK8S_TEST_AFTER="sigterm")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]  # committed: the eviction does not undo a finished run
    first = evicted.result()
    (evicted.xcom / "return.json").unlink()  # as if the pod died before the sidecar read the result

    relaunch = Driver(ray_cluster, tmp_path, "relaunch", docs, out)
    relaunch.env["RAY_ADDRESS"] = "127.0.0.1:9"  # nothing listens: the relaunch must not need Ray at all
    proc = relaunch.start()
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    assert "already committed" in output and "start: input=" not in output
    again = relaunch.result()
    assert {k: v for k, v in again.items() if k != "commit_s"} == {k: v for k, v in first.items() if k != "commit_s"}
    assert len(_ids(out)) == first["output_rows"]
