"""Pod networking for the process kubelet: one network namespace and IP per pod, all on one Linux bridge.

What a CNI plugin does on a node, done with ``ip`` (exec arrays, as root): a bridge in the root namespace
holds the gateway address of a private /24; each pod gets a network namespace (``ip netns add``), a veth
pair with one end on the bridge and the other renamed ``eth0`` inside, an address from the /24, loopback up
and a default route to the gateway. Pods reach each other (and the root namespace reaches them) only through
those addresses; ``127.0.0.1`` inside a pod is the pod's own.

Names carry the owning process id (``mk8s-<pid><k>-<n>`` namespaces, ``mk8s<pid><k>`` bridge,
``mk<pid><k>v<n>`` veths) so runs never collide, and :func:`sweep_stale` deletes what a dead run left
behind. The subnet is picked among 10.200.0.0/16 .. 10.207.255.0/24 so that it overlaps no address or route
on the machine, under a file lock shared by concurrent runs.

Not modelled: NetworkPolicies, kube-proxy (Service ClusterIPs are not routed: Service names resolve to the
pods behind them, see tests/k8s_api/pod_dns.py), IPv6, bandwidth limits.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

_COUNTER = itertools.count()
LOCK_FILE = Path("/tmp/mlk8s-k8s-api-network.lock")


class NetworkError(RuntimeError):
    """An ``ip`` command failed; the message carries the command and its stderr."""


def ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _owner_pid(name: str) -> int | None:
    match = (
        re.match(r"^mk8s-(\d+)[a-z]-", name)
        or re.match(r"^mk8s(\d+)[a-z]$", name)
        or re.match(r"^mk(\d+)[a-z][vc][0-9a-f]+$", name)
    )
    return int(match.group(1)) if match else None


def sweep_stale() -> list[str]:
    """Delete namespaces, bridges and veths left by runs whose process is gone (and kill what ran in them)."""
    removed = []
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        pid = _owner_pid(name)
        if pid is not None and not _pid_alive(pid):
            for proc in ip("netns", "pids", name, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                    os.kill(int(proc), 9)
            ip("netns", "delete", name, check=False)
            removed.append(name)
    for link in json.loads(ip("-j", "link", "show", check=False) or "[]"):
        name = link.get("ifname", "")
        pid = _owner_pid(name)
        if pid is not None and not _pid_alive(pid):
            ip("link", "delete", name, check=False)
            removed.append(name)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for entry in json.loads(ip("-j", "-4", "addr", "show", check=False) or "[]"):
        for addr in entry.get("addr_info") or []:
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all", check=False) or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
    return used


def _pick_subnet(seed: int) -> ipaddress.IPv4Network:
    used = _used_networks()
    for offset in range(8 * 256):
        index = (seed + offset) % (8 * 256)
        candidate = ipaddress.IPv4Network(f"10.{200 + index // 256}.{index % 256}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise NetworkError("no free /24 left in 10.200.0.0/13 for a pod network")


@dataclass(frozen=True)
class PodInterface:
    """A pod's network: its namespace (``/run/netns/<netns>``), address and the host end of its veth."""

    netns: str
    ip: str
    host_veth: str

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


class PodNetwork:
    """The bridge and the pods' namespaces of one run; :meth:`stop` removes all of it."""

    def __init__(self) -> None:
        self.run_id = f"{os.getpid()}{chr(ord('a') + next(_COUNTER) % 26)}"
        self.bridge = f"mk8s{self.run_id}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._pods: dict[str, PodInterface] = {}
        self._free: list[str] = []
        self._next_host = 2
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def gateway(self) -> str:
        if self.subnet is None:
            raise NetworkError("the pod network is not started")
        return str(self.subnet.network_address + 1)

    def start(self) -> PodNetwork:
        sweep_stale()
        LOCK_FILE.touch(exist_ok=True)
        with open(LOCK_FILE) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.subnet = _pick_subnet(os.getpid() * 7 + next(_COUNTER))
                ip("link", "add", self.bridge, "type", "bridge")
                ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
                ip("link", "set", self.bridge, "up")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return self

    def _allocate(self) -> str:
        assert self.subnet is not None
        if self._next_host < self.subnet.num_addresses - 1:
            address = str(self.subnet.network_address + self._next_host)
            self._next_host += 1
            return address
        if self._free:
            return self._free.pop(0)
        raise NetworkError(f"pod network {self.subnet} is full")

    def add_pod(self, key: str) -> PodInterface:
        """Create the namespace, veth, address and routes of a new pod."""
        with self._lock:
            if key in self._pods:
                return self._pods[key]
            serial = next(self._serial)
            address = self._allocate()
        assert self.subnet is not None
        iface = PodInterface(f"mk8s-{self.run_id}-{serial}", address, f"mk{self.run_id}v{serial:x}")
        peer = f"mk{self.run_id}c{serial:x}"
        try:
            ip("netns", "add", iface.netns)
            ip("link", "add", iface.host_veth, "type", "veth", "peer", "name", peer)
            ip("link", "set", iface.host_veth, "master", self.bridge, "up")
            ip("link", "set", peer, "netns", iface.netns)
            ip("-n", iface.netns, "link", "set", peer, "name", "eth0")
            ip("-n", iface.netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", iface.netns, "link", "set", "eth0", "up")
            ip("-n", iface.netns, "link", "set", "lo", "up")
            ip("-n", iface.netns, "route", "add", "default", "via", self.gateway)
        except Exception:
            self._teardown(iface)
            raise
        with self._lock:
            self._pods[key] = iface
        return iface

    def remove_pod(self, key: str) -> None:
        with self._lock:
            iface = self._pods.pop(key, None)
        if iface is not None:
            self._teardown(iface)
            with self._lock:
                self._free.append(iface.ip)

    def _teardown(self, iface: PodInterface) -> None:
        ip("link", "delete", iface.host_veth, check=False)
        ip("netns", "delete", iface.netns, check=False)

    def stop(self) -> None:
        with self._lock:
            pods = list(self._pods.values())
            self._pods.clear()
        for iface in pods:
            self._teardown(iface)
        ip("link", "delete", self.bridge, check=False)
