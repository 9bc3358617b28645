"""Runs ``python -m mlk8s.preprocessing`` with a fault point around the commit, for the exactly-once tests.

The tests start this file as the driver process. Before the commit it touches ``$MLK8S_TEST_MARK`` and waits
until ``$MLK8S_TEST_BARRIER`` markers exist in its directory (two racing drivers meet there) or
``$MLK8S_TEST_PAUSE_S`` passes (the test kills it meanwhile). With ``$MLK8S_TEST_AFTER=sigterm`` (or
``sigkill``) it signals itself right after the commit lands (an eviction, or a lost node, at the worst moment).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import mlk8s.preprocessing.run as run
from mlk8s.preprocessing.cli import main

original = run.commit_parts


def around_commit(*args: Any, **kwargs: Any) -> Any:
    mark = Path(os.environ["MLK8S_TEST_MARK"])
    mark.touch()
    wanted = int(os.environ.get("MLK8S_TEST_BARRIER", "0"))
    deadline = time.monotonic() + float(os.environ.get("MLK8S_TEST_PAUSE_S", "0"))
    give_up = time.monotonic() + 300  # the other driver died: go on rather than hang
    while (
        len(list(mark.parent.glob("*.mark"))) < wanted or time.monotonic() < deadline
    ) and time.monotonic() < give_up:
        time.sleep(0.05)
    result = original(*args, **kwargs)
    after = os.environ.get("MLK8S_TEST_AFTER")
    if after in ("sigterm", "sigkill"):
        os.kill(os.getpid(), signal.SIGTERM if after == "sigterm" else signal.SIGKILL)
        time.sleep(0.5)  # the signal is handled here, between the commit and the result file
    return result


run.commit_parts = around_commit
sys.exit(main(sys.argv[1:]))
