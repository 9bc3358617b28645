"""The pod network: names unique to the run, a free subnet, everything removed after, leftovers of dead runs swept."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.k8s_api.network import PodNetwork, ip, sweep_stale
from tests.k8s_api.runtime import sweep_stale_dirs

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

DEAD_PID = 99999999  # above any pid_max: never a live process


def _netns() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.split()}


def _links() -> set[str]:
    return {link["ifname"] for link in json.loads(ip("-j", "link", "show") or "[]")}


def test_pods_get_their_own_namespace_and_address_and_all_of_it_goes_away() -> None:
    network = PodNetwork().start()
    try:
        assert str(os.getpid()) in network.bridge and len(network.bridge) <= 15
        a, b = network.add_pod("a"), network.add_pod("b")
        assert a.ip != b.ip and network.subnet is not None
        assert {a.ip, b.ip, network.gateway} <= {str(h) for h in network.subnet.hosts()}
        assert {a.netns, b.netns} <= _netns() and str(os.getpid()) in a.netns
        inside = subprocess.run(["ip", "-n", a.netns, "-j", "-4", "addr"], capture_output=True, text=True, check=True)
        addresses = {i["local"] for e in json.loads(inside.stdout) for i in e["addr_info"]}
        assert addresses == {"127.0.0.1", a.ip}
        network.remove_pod("a")
        assert a.netns not in _netns() and a.host_veth not in _links()
    finally:
        network.stop()
    assert b.netns not in _netns() and network.bridge not in _links()


def test_leftovers_of_a_dead_run_are_swept(tmp_path: Path) -> None:
    ip("netns", "add", f"mk8s-{DEAD_PID}a-1")
    stale_dir = Path("/var/tmp") / f"mlk8s-kubelet-{DEAD_PID}-xyz"
    stale_dir.mkdir(exist_ok=True)
    live_dir = Path("/var/tmp") / f"mlk8s-kubelet-{os.getpid()}-live"
    live_dir.mkdir(exist_ok=True)
    try:
        assert f"mk8s-{DEAD_PID}a-1" in sweep_stale()
        assert f"mk8s-{DEAD_PID}a-1" not in _netns()
        assert stale_dir in sweep_stale_dirs() and not stale_dir.exists()
        assert live_dir.exists()  # a live run's directory is never touched
    finally:
        live_dir.rmdir()
        ip("netns", "delete", f"mk8s-{DEAD_PID}a-1", check=False)
