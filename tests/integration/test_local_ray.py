"""LocalRayCluster against real ``ray start`` node processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlk8s.local_ray import LocalRayCluster

pytest_plugins = ["tests.integration.ray_fixtures"]

PROBE = "import ray; ray.init(); print(int(ray.cluster_resources()['CPU']))"
# A bare GCS query: refused clients fail in well under a second (ray.init retries for 20 s).
GCS_PROBE = (
    "import os; from ray._raylet import GcsClient; "
    "print(len(GcsClient(address=os.environ['RAY_ADDRESS']).get_all_node_info(timeout=5)))"
)


def _probe(env: dict[str, str], code: str = PROBE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


@pytest.mark.slow
@pytest.mark.ray
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


@pytest.mark.slow
@pytest.mark.ray
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


@pytest.mark.slow
@pytest.mark.ray
def test_kill_node_removes_it_and_its_processes(ray_cluster: LocalRayCluster) -> None:
    node_id = ray_cluster.add_worker(num_cpus=1)
    pid = ray_cluster.node(node_id).pid
    ray_cluster.kill_node(node_id)
    assert node_id not in {n.node_id for n in ray_cluster.nodes()}
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


@pytest.mark.slow
@pytest.mark.ray
def test_bad_arguments_are_refused_before_anything_starts(ray_cluster: LocalRayCluster) -> None:
    with pytest.raises(KeyError, match="no worker node"):
        ray_cluster.remove_worker("not-a-node")
    with pytest.raises(ValueError, match="label"):
        ray_cluster.add_worker(num_cpus=1, labels={"a=b": "c"})


def test_too_long_temp_dir_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="at most"):
        LocalRayCluster("/tmp/" + "x" * 80)


def test_address_before_start_says_to_start() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = LocalRayCluster("/tmp/rl-unused").address
