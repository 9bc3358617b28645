"""SIGTERM becomes a flag with the time it arrived; the first one counts, and the handlers can be put back."""

from __future__ import annotations

import os
import signal

from mlk8s.training.signals import StopSignal


def test_sigterm_is_recorded_once_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopSignal()
    previous = stop.install()
    try:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        first = stop.at
        assert stop.requested and first is not None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.at == first
    finally:
        StopSignal.uninstall(previous)
    assert signal.getsignal(signal.SIGTERM) == before
