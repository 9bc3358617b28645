"""The background writer: order, coalescing heartbeats, and errors surfacing in the training thread."""

from __future__ import annotations

import threading

import pytest

from mlk8s.checkpoint import BackgroundWriter


def test_commits_run_in_order_and_wait_drains_them() -> None:
    writer = BackgroundWriter()
    done: list[int] = []
    for i in range(5):
        writer.submit(lambda i=i: done.append(i))
    writer.wait()
    writer.close()
    assert done == [0, 1, 2, 3, 4]


def test_heartbeats_coalesce_to_the_newest() -> None:
    writer = BackgroundWriter()
    gate = threading.Event()
    seen: list[int] = []
    writer.submit(gate.wait)  # hold the thread so heartbeats pile up
    for i in range(10):
        writer.heartbeat(lambda i=i: seen.append(i))
    gate.set()
    writer.wait(heartbeats=True)
    writer.close()
    assert seen == [9]


def test_a_failed_commit_is_raised_in_the_caller() -> None:
    writer = BackgroundWriter()

    def boom() -> None:
        raise OSError("disk full")

    writer.submit(boom)
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    with pytest.raises(OSError, match="disk full"):
        writer.check()
    with pytest.raises(OSError, match="disk full"):
        writer.submit(lambda: None)
    writer.close()
