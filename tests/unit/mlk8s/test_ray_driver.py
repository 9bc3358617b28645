"""The driver's connection, without a Ray cluster: the bounded wait for an unreachable pool, the choice between
attaching to a raylet on this host and joining as a node of its own, and the bounds as command-line flags."""

from __future__ import annotations

import argparse
import time

import pytest

from mlk8s.net import free_port
from mlk8s.ray_driver import (
    CONNECT_TIMEOUT_ENV,
    HEAD_LOST_TIMEOUT_ENV,
    RayPoolUnreachable,
    add_arguments,
    raylet_here,
    wait_for_pool,
)
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


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_bounds_are_flags_defaulting_to_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONNECT_TIMEOUT_ENV, raising=False)
    assert parse([]).ray_connect_timeout_s == 60.0 and parse([]).ray_head_lost_timeout_s == 60.0
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, "2.5")
    monkeypatch.setenv(HEAD_LOST_TIMEOUT_ENV, "9")
    assert (parse([]).ray_connect_timeout_s, parse([]).ray_head_lost_timeout_s) == (2.5, 9.0)
    assert parse(["--ray-connect-timeout-s", "4"]).ray_connect_timeout_s == 4.0  # the flag wins


@pytest.mark.parametrize("bad", ["soon", "0", "-3", "inf"])
def test_a_bad_bound_is_a_usage_error_naming_the_flag(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--ray-connect-timeout-s", bad])
    assert exited.value.code == 2
    assert "--ray-connect-timeout-s" in capsys.readouterr().err
