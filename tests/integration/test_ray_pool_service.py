"""The local Ray pool as a service, used from separate processes as make up's scheduler, triggerer and workers
use it: started by one command that exits, grown by another process that exits too (its node lives on), grown by
two processes at once (both nodes kept), read by a third, and stopped by pid, with nothing of it left running."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mlk8s.local_ray.pool import POOL_ENV, LocalRayPool
from mlk8s.ray_gcs import GROUP_LABEL, GcsClient, GcsError

pytestmark = [pytest.mark.slow, pytest.mark.ray]

GROW = f"""
import json, sys
from mlk8s.local_ray.pool import LocalRayPool
record = LocalRayPool.from_env().add_worker(1, labels={{"{GROUP_LABEL}": "cpu"}})
print(json.dumps({{"node_id": record.node_id, "pid": record.pid}}))
"""


def pool_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlk8s.local_ray.pool", *args], capture_output=True, text=True, timeout=400, env=env
    )


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mlk8s-pool-"))
    try:
        yield path
    finally:
        LocalRayPool(path).stop()  # whatever a failing test left running
        shutil.rmtree(path, ignore_errors=True)


def test_the_pool_outlives_the_processes_that_start_and_grow_it_and_stop_ends_every_node(state_dir: Path) -> None:
    started = pool_cli("start", "--state-dir", str(state_dir), "--head-cpus", "1")
    assert started.returncode == 0, started.stderr[-3000:]
    info = json.loads(started.stdout)
    address = info["address"]
    assert info["running"] and address.startswith("127.0.0.1:")
    assert (state_dir / "pool.json").exists()

    # Two processes grow the pool at the same moment (the lock serialises them); both exit right after.
    env = {**os.environ, POOL_ENV: str(state_dir)}
    growers = [
        subprocess.Popen(
            [sys.executable, "-c", GROW], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    grown = []
    for grower in growers:
        out, err = grower.communicate(timeout=600)
        assert grower.returncode == 0, err[-3000:]
        grown.append(json.loads(out))
    assert len({g["node_id"] for g in grown}) == 2

    status = pool_cli("status", env=env)
    assert status.returncode == 0, status.stderr
    nodes = json.loads(status.stdout)["nodes"]
    workers = {n["node_id"] for n in nodes if not n["head"]}
    assert workers == {g["node_id"] for g in grown}  # neither grower lost the other's record
    token = (Path(json.loads(status.stdout)["token_path"])).read_text()
    with GcsClient(address, token=token) as gcs:
        alive = {n.node_id: n for n in gcs.nodes()}
    assert workers <= set(alive)
    assert all(alive[w].labels[GROUP_LABEL] == "cpu" for w in workers)

    # Every process of every node: the `ray start` process, its GCS, raylet, agents and Ray workers.
    processes = [psutil.Process(n["pid"]) for n in nodes]
    processes += [child for p in list(processes) for child in p.children(recursive=True)]
    stopped = pool_cli("stop", env=env)
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["stopped"] is True
    _, alive_after = psutil.wait_procs(processes, timeout=30)
    assert [p for p in alive_after if p.status() != psutil.STATUS_ZOMBIE] == []
    with GcsClient(address, token=token, timeout_s=2.0) as gcs, pytest.raises(GcsError):
        gcs.nodes()
    assert pool_cli("status", env=env).returncode == 3


def _starting(state_dir: Path) -> list[dict[str, object]]:
    try:
        return list(json.loads((state_dir / "pool.json").read_text())["cluster"].get("starting", []))
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_a_node_whose_starter_is_sigkilled_before_it_registers_is_ended_by_the_next_change(state_dir: Path) -> None:
    started = pool_cli("start", "--state-dir", str(state_dir), "--head-cpus", "1")
    assert started.returncode == 0, started.stderr[-3000:]
    env = {**os.environ, POOL_ENV: str(state_dir)}
    grower = subprocess.Popen([sys.executable, "-c", GROW], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not _starting(state_dir):  # the node's process runs; its registration is still awaited
            assert grower.poll() is None, grower.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "pool.json never listed the node being started"
            time.sleep(0.02)
        grower.kill()  # SIGKILL: no handler runs, only the file lock is released
        grower.wait(timeout=30)
    finally:
        if grower.poll() is None:
            grower.kill()
            grower.wait(timeout=30)
    [left] = _starting(state_dir)
    node = psutil.Process(int(str(left["pid"])))
    assert node.is_running() and node.status() != psutil.STATUS_ZOMBIE  # the start outlived its starter

    pool = LocalRayPool(state_dir)
    assert pool.claim_decision("after-the-kill")  # any change under the pool's lock
    assert psutil.wait_procs([node], timeout=30)[1] == []
    assert _starting(state_dir) == []
    assert pool.running().workers == ()
    with pool.gcs() as gcs:
        deadline = time.monotonic() + 60  # a node that registered just before the kill is marked dead in ~3 s
        while any(not n.head for n in gcs.nodes()):
            assert time.monotonic() < deadline, gcs.nodes()
            time.sleep(0.5)
