"""This host's network facts: free ports, its own addresses, loopback."""

from __future__ import annotations

import socket

import pytest

from mlk8s.net import LOOPBACK, free_port, is_loopback, local_addresses


def test_a_free_port_can_be_bound() -> None:
    port = free_port(LOOPBACK)
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))


def test_this_host_answers_on_loopback() -> None:
    assert LOOPBACK in local_addresses()
    assert "203.0.113.77" not in local_addresses()  # TEST-NET-3: nobody's address


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("10.0.0.1", False),
        ("head-svc", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
