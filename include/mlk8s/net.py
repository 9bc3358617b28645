"""This host's network facts that Ray set-ups need: a free port, and the addresses this host answers on.

Others run Ray and servers on the same machine, so no default port is ever assumed; and a driver decides
whether a raylet of its cluster runs here by comparing node addresses with this host's own (a pod has its own
network namespace, so its addresses are the pod's).
"""

from __future__ import annotations

import ipaddress
import socket

#: The address local-only servers bind to.
LOOPBACK = "127.0.0.1"


def free_port(host: str = "") -> int:
    """A TCP port nobody listens on right now on ``host`` (default: any interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def local_addresses() -> set[str]:
    """Every IPv4 and IPv6 address of this host's (or this network namespace's) interfaces."""
    import psutil

    return {
        addr.address.split("%")[0]
        for addrs in psutil.net_if_addrs().values()
        for addr in addrs
        if addr.family in (socket.AF_INET, socket.AF_INET6)
    }


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
