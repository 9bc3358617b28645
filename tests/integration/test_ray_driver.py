"""The driver pod's Ray connection (``mlk8s.ray_driver``) against real clusters, from where pods run.

A pod is a host of its own: the driver here runs in a network namespace of its own (``ip netns``, a veth pair,
names unique to this test run, deleted after), reaching a local cluster whose head listens on the veth address,
exactly as a KubernetesPodOperator pod reaches the KubeRay head service. It must join the pool as a
zero-resource node (no raylet of the cluster runs in its namespace), run the preprocessing job and commit
the right output. The bounds: an unreachable pool fails in one line within the connect timeout, and a head that
goes away mid-run ends the driver once Ray's GCS reconnect timeout has passed, never a hang (each subprocess
runs under a limit it must not reach).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlk8s.local_ray import LocalRayCluster
from mlk8s.net import free_port
from mlk8s.preprocessing import load_spec, open_input, read_output, write_documents
from mlk8s.preprocessing.reference import run_reference
from mlk8s.ray_driver import CONNECT_TIMEOUT_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
#: No embedding step: this test is about where the driver runs, not about the model.
SPEC: dict[str, Any] = {"steps": ["html_to_text", "clean_text", "text_features", "non_empty_text"]}


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def _free_subnet() -> tuple[str, str]:
    """A /30 of 100.64.0.0/10 (carrier-grade NAT space) that no interface of this host uses, keyed by our pid."""
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    for i in range(256):
        n = (os.getpid() + i * 7919) % (64 * 256 * 64)
        base = f"100.{64 + n // (256 * 64)}.{(n // 64) % 256}.{(n % 64) * 4}"
        prefix = base.rsplit(".", 1)[0]
        host = f"{prefix}.{int(base.rsplit('.', 1)[1]) + 1}"
        pod = f"{prefix}.{int(base.rsplit('.', 1)[1]) + 2}"
        if f"inet {host}/" not in used and f"inet {pod}/" not in used:
            return host, pod
    raise RuntimeError("no free /30 in 100.64.0.0/10 for the test's veth pair")


@pytest.fixture(scope="module")
def pod_netns() -> Iterator[dict[str, str]]:
    """A network namespace standing in for a pod: its own veth address, a route to the host, nothing else."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    tag = f"{os.getpid() % 100000}"
    name, host_if, pod_if = f"mlk8s-d1-{tag}", f"d1h{tag}", f"d1p{tag}"
    host_ip, pod_ip = _free_subnet()
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        _run("ip", "link", "set", pod_if, "netns", name)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "netns", "exec", name, "ip", "addr", "add", f"{pod_ip}/30", "dev", pod_if)
        _run("ip", "netns", "exec", name, "ip", "link", "set", pod_if, "up")
        _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        _run("ip", "netns", "exec", name, "ip", "route", "add", "default", "via", host_ip)
        yield {"name": name, "host_ip": host_ip, "pod_ip": pod_ip}
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def veth_cluster(pod_netns: dict[str, str]) -> Iterator[LocalRayCluster]:
    """A cluster configured to listen on the host's veth address (so the pod namespace can reach it)."""
    temp_dir = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    cluster = LocalRayCluster(temp_dir, head_cpus=2, host=pod_netns["host_ip"], drain_timeout_s=2.0)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _pod_env(cluster: LocalRayCluster, xcom_dir: Path) -> dict[str, str]:
    """What a pod gets: the pool's address and token, nothing else of this process's Ray set-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_ADDRESS=cluster.address, RAY_AUTH_TOKEN=cluster.token, MLK8S_XCOM_DIR=str(xcom_dir))
    return env


def test_a_driver_in_its_own_network_namespace_joins_as_a_zero_resource_node_and_commits(
    pod_netns: dict[str, str], veth_cluster: LocalRayCluster, tmp_path: Path
) -> None:
    docs = write_documents(tmp_path / "docs.jsonl", rows=200)
    output = tmp_path / "out"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    # The pod namespace has no route to the loopback cluster of any other test: only the veth address.
    assert not veth_cluster.address.startswith("127.")
    proc = subprocess.run(
        [
            *("ip", "netns", "exec", pod_netns["name"], sys.executable, "-m", "mlk8s.preprocessing"),
            *("--input", str(docs), "--output", str(output), "--pipeline", str(spec_file)),
        ],
        env=_pod_env(veth_cluster, tmp_path / "xcom"),
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "as zero-resource node" in log and f"({pod_netns['pod_ip']})" in log, log[-4000:]
    result = json.loads((tmp_path / "xcom" / "return.json").read_text())
    expected = run_reference(load_spec(str(spec_file)), open_input(str(docs)))
    committed = read_output(str(output))
    assert result["output_rows"] == expected.num_rows == committed.num_rows > 0
    assert sorted(committed.column("id").to_pylist()) == sorted(expected.column("id").to_pylist())
    # The driver's own node went with it: only the head is left in the pool.
    deadline = time.monotonic() + 60
    while len(veth_cluster.nodes()) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [n.head for n in veth_cluster.nodes()] == [True]


def test_an_unreachable_pool_fails_in_one_line_within_the_connect_timeout(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs.jsonl", rows=5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_ADDRESS=f"127.0.0.1:{free_port()}", RAY_AUTH_TOKEN="t" * 64, **{CONNECT_TIMEOUT_ENV: "3"})
    proc = subprocess.run(
        [sys.executable, "-m", "mlk8s.preprocessing", "--input", str(docs), "--output", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,  # the default connect timeout is 60 s: finishing well within this shows the env var counts
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "cannot reach the Ray pool at 127.0.0.1:" in errors[0] and "within 3 s" in errors[0]
    assert "Traceback" not in proc.stderr
    # Validation may create the (empty) table before connecting; no row of this run is in it.
    assert not (tmp_path / "out").exists() or read_output(str(tmp_path / "out")).num_rows == 0


HOLD = """
import sys, time, ray
from mlk8s.ray_driver import connect
with connect(sys.argv[1], None, connect_timeout_s=60, head_lost_timeout_s=float(sys.argv[2])):
    ref = ray.remote(num_cpus=1)(lambda: time.sleep(600)).remote()
    print("running", flush=True)
    ray.get(ref)
print("finished", flush=True)
"""


def test_a_head_that_goes_away_ends_the_driver_within_the_reconnect_timeout(tmp_path: Path) -> None:
    temp_dir = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    cluster = LocalRayCluster(temp_dir, head_cpus=1, drain_timeout_s=1.0)
    driver: subprocess.Popen[str] | None = None
    try:
        cluster.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["RAY_AUTH_TOKEN"] = cluster.token
        driver = subprocess.Popen(
            [sys.executable, "-c", HOLD, cluster.address, "5"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert driver.stdout is not None
        first = driver.stdout.readline()
        assert first.strip() == "running", first + driver.stdout.read()[-3000:]
        (head,) = cluster.records()
        os.killpg(head.pid, signal.SIGKILL)  # the head's machine is gone
        # Ray's own default would be 60 s; 5 s plus detection must end the driver long before this limit.
        rest, _ = driver.communicate(timeout=120)
        assert driver.returncode != 0, rest[-3000:]
        assert "finished" not in rest
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
