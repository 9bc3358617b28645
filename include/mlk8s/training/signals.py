"""SIGTERM (and SIGINT) as a flag the training loop polls, so a pod's eviction becomes a checkpoint, not a death."""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any


class StopSignal:
    """SIGTERM (and SIGINT) become a timestamp that the loop polls between steps.

    Installed as early as possible by the CLI, so a SIGTERM during start-up is honoured too instead of killing
    the process with the default handler, and kept until the process exits, so a SIGTERM after the last step
    cannot turn a finished run into a signal death.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.at is None:
            self.at = time.monotonic()

    @property
    def requested(self) -> bool:
        return self.at is not None

    def request(self) -> None:
        self(signal.SIGTERM, None)

    def install(self) -> dict[int, Any]:
        return {sig: signal.signal(sig, self) for sig in self.SIGNALS}

    @staticmethod
    def uninstall(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    @classmethod
    def ignore(cls) -> None:
        """Ignore the signals from now on (the result is written; teardown must not turn it into a death)."""
        for sig in cls.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
