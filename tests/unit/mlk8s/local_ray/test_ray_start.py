"""Ray's command line, with loopback kept loopback: 127.0.0.1 stays 127.0.0.1, anything else resolves as in Ray."""

from __future__ import annotations

from mlk8s import compat
from mlk8s.local_ray.ray_start import keep_loopback


def test_loopback_stays_loopback_and_other_hosts_resolve_as_ray_does() -> None:
    services = compat.get("ray.services")
    keep_loopback()
    keep_loopback()  # idempotent: wrapping twice would still work, but is not done
    assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
    assert services.resolve_ip_for_localhost("10.1.2.3") == "10.1.2.3"
    # The bootstrap address of `ray.init(address=...)` and `ray start --address=...` goes the same way.
    assert services.canonicalize_bootstrap_address("127.0.0.1:6379") == "127.0.0.1:6379"
