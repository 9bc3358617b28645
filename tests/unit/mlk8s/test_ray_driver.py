"""The driver's connection, without a Ray cluster: the bounded wait for an unreachable pool, the choice between
attaching to a raylet on this host and joining as a node of its own, and the timeout settings."""

from __future__ import annotations

import time

import pytest

from mlk8s.net import free_port
from mlk8s.ray_driver import CONNECT_TIMEOUT_ENV, RayPoolUnreachable, raylet_here, timeout_from_env, wait_for_pool
from mlk8s.ray_gcs import GcsNode


def node(ip: str, head: bool = False) -> GcsNode:
    return GcsNode(node_id="ab" * 28, name="n", ip=ip, resources={}, labels={}, head=head)


def test_an_unreachable_pool_is_one_line_naming_the_address_and_the_fix() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RayPoolUnreachable) as raised:
        wait_for_pool(address, "token", timeout_s=1.5)
    message = str(raised.value)
    assert "\n" not in message
    assert f"cannot reach the Ray pool at {address} within 1.5 s" in message
    assert CONNECT_TIMEOUT_ENV in message and "RAY_ADDRESS" in message
    assert time.monotonic() - started < 30  # bounded, not Ray's retry-for-minutes


def test_a_raylet_here_is_one_whose_address_this_host_has() -> None:
    assert raylet_here([node("203.0.113.9"), node("127.0.0.1", head=True)]) == node("127.0.0.1", head=True)
    assert raylet_here([node("203.0.113.9")]) is None  # a pod: join as a zero-resource node


def test_timeouts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert timeout_from_env("MLK8S_TEST_UNSET", 7.0) == 7.0
    monkeypatch.setenv("MLK8S_TEST_T", "2.5")
    assert timeout_from_env("MLK8S_TEST_T", 7.0) == 2.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("MLK8S_TEST_T", bad)
        with pytest.raises(ValueError, match="MLK8S_TEST_T=.*seconds > 0"):
            timeout_from_env("MLK8S_TEST_T", 7.0)
