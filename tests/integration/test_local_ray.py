"""LocalRayCluster against real ``ray start`` node processes: nodes come and go, token auth holds whatever the
caller's environment says, and nothing listens beyond loopback unless the cluster is told to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mlk8s.local_ray import LocalRayCluster
from mlk8s.ray_auth import write_token_file
from mlk8s.ray_gcs import GcsClient, GcsError

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.ray]

PROBE = (
    "import os, ray\nfrom mlk8s.ray_driver import connect\n"
    "with connect(os.environ['RAY_ADDRESS'], None, connect_timeout_s=60):\n"
    "    print(int(ray.cluster_resources()['CPU']))"
)
# Ray's own GCS client, which takes the token from the environment: refused clients fail in under a second.
GCS_PROBE = (
    "import os; from ray._raylet import GcsClient; "
    "print(len(GcsClient(address=os.environ['RAY_ADDRESS']).get_all_node_info(timeout=5)))"
)


def _probe(env: dict[str, str], code: str = PROBE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


def listening_addresses(pids: list[int]) -> set[str]:
    """The local addresses every process of these nodes (and their children) listens on."""
    tree = set(pids)
    for pid in pids:
        tree |= {child.pid for child in psutil.Process(pid).children(recursive=True)}
    return {
        conn.laddr.ip
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.pid in tree
    }


def test_client_env_lets_a_driver_in_and_no_token_keeps_it_out(ray_cluster: LocalRayCluster) -> None:
    ok = _probe({**_clean_env(), **ray_cluster.client_env()})
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert int(ok.stdout.strip().splitlines()[-1]) == sum(n.resources.get("CPU", 0) for n in ray_cluster.nodes())

    # Right address, auth mode on, wrong token: refused.
    bad_token = ray_cluster.temp_dir / "wrong_token"
    bad_token.write_text("0" * 64)
    good = _probe({**_clean_env(), **ray_cluster.client_env()}, GCS_PROBE)
    assert good.returncode == 0, good.stderr[-2000:]
    env = {**_clean_env(), **ray_cluster.client_env(), "RAY_AUTH_TOKEN_PATH": str(bad_token)}
    refused = _probe(env, GCS_PROBE)
    assert refused.returncode != 0 and "AuthenticationError" in refused.stderr
    # No auth at all: refused too.
    env = {**_clean_env(), "RAY_ADDRESS": ray_cluster.address, "RAY_AUTH_MODE": "disabled"}
    refused = _probe(env, GCS_PROBE)
    assert refused.returncode != 0 and "AuthenticationError" in refused.stderr


def test_every_server_of_every_node_listens_on_loopback_only(ray_cluster: LocalRayCluster) -> None:
    addresses = listening_addresses([record.pid for record in ray_cluster.records()])
    assert addresses, "found no listening sockets of the cluster's nodes"
    assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, addresses


PRIVATE = """
import sys, ray
from mlk8s.ray_driver import connect
with connect(None, 1):
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.readline()
"""


def test_a_drivers_private_cluster_keeps_token_auth_when_disabled_is_inherited(tmp_path: Path) -> None:
    token_path = write_token_file(tmp_path / "token", "a" * 64)
    env = {**_clean_env(), "RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    driver = subprocess.Popen(
        [sys.executable, "-c", PRIVATE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout is not None and driver.stdin is not None
        address = driver.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        with GcsClient(address, token=None) as anonymous, pytest.raises(GcsError, match="UNAUTHENTICATED"):
            anonymous.nodes()
        with GcsClient(address, token="a" * 64) as client:
            assert [n.head for n in client.nodes()] == [True]
        driver.stdin.write("\n")
        driver.stdin.flush()
        assert driver.wait(timeout=120) == 0
    finally:
        if driver.poll() is None:
            driver.kill()


def test_add_and_remove_worker_changes_the_alive_nodes(ray_cluster: LocalRayCluster) -> None:
    before = {n.node_id for n in ray_cluster.nodes()}
    node_id = ray_cluster.add_worker(num_cpus=2, resources={"pool_slot": 3}, labels={"mlk8s/pool": "stateless"})
    try:
        nodes = {n.node_id: n for n in ray_cluster.nodes()}
        assert set(nodes) == before | {node_id}
        assert nodes[node_id].resources["CPU"] == 2
        assert nodes[node_id].resources["pool_slot"] == 3
        assert nodes[node_id].labels["mlk8s/pool"] == "stateless"
        assert not nodes[node_id].head
    finally:
        ray_cluster.remove_worker(node_id)
    assert {n.node_id for n in ray_cluster.nodes()} == before
    assert node_id not in ray_cluster.worker_ids()


def test_kill_node_removes_it_and_its_processes(ray_cluster: LocalRayCluster) -> None:
    node_id = ray_cluster.add_worker(num_cpus=1)
    pid = ray_cluster.node(node_id).pid
    ray_cluster.kill_node(node_id)
    assert node_id not in {n.node_id for n in ray_cluster.nodes()}
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_bad_arguments_are_refused_before_anything_starts(ray_cluster: LocalRayCluster) -> None:
    with pytest.raises(KeyError, match="no worker node"):
        ray_cluster.remove_worker("not-a-node")
    with pytest.raises(ValueError, match="label"):
        ray_cluster.add_worker(num_cpus=1, labels={"a=b": "c"})
