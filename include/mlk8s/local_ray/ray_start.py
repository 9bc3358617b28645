"""``python -m mlk8s.local_ray.ray_start ...``: Ray's own ``ray`` command line, with loopback kept loopback.

Ray binds its servers (GCS, raylet, object manager, agents) to 127.0.0.1 only when a node's IP is 127.0.0.1,
and to every interface otherwise. But ``ray start`` and ``ray.init`` turn ``127.0.0.1`` (in
``--node-ip-address`` and in the cluster address) into the machine's outward IP first, because on Linux Ray
assumes a multi-host cluster. A local cluster that only this machine may reach therefore runs its nodes
through this module, which makes Ray's ``resolve_ip_for_localhost`` leave 127.0.0.1 as it is and then hands
over to Ray's CLI; a driver of such a cluster calls :func:`keep_loopback` before ``ray.init``. Any other
address is resolved exactly as Ray does.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence

from mlk8s import compat
from mlk8s.net import LOOPBACK

_lock = threading.Lock()
_patched = False


def keep_loopback() -> None:
    """Make this process's Ray keep 127.0.0.1 as the node and cluster address (idempotent)."""
    global _patched
    with _lock:
        if _patched:
            return
        services = compat.get("ray.services")
        resolve: Callable[[str], str] = services.resolve_ip_for_localhost

        def resolve_keeping_loopback(host: str) -> str:
            return host if host == LOOPBACK else resolve(host)

        services.resolve_ip_for_localhost = resolve_keeping_loopback
        _patched = True


def main(argv: Sequence[str] | None = None) -> None:
    keep_loopback()
    sys.argv = ["ray", *(sys.argv[1:] if argv is None else argv)]
    compat.get("ray.cli")()


if __name__ == "__main__":
    main()
