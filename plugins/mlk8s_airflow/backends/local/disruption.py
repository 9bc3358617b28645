"""A simulated eviction for the local backend: which signal, when, and on which launch attempts.

Locally nothing evicts a "pod", so the demo and the chaos tests ask for one (the operator's
``local_disruption``); ``LocalPodProcess`` sends the signal the way a kubelet would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlk8s_airflow.backends.podspec import PodSpecError

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


@dataclass(frozen=True)
class LocalDisruption:
    """Send ``signal`` to the pod's process once ``after_log`` matches a log line (or ``after_s`` seconds have
    passed), on the listed launch attempts only (1 = the first pod)."""

    signal: str = "SIGTERM"
    after_log: str | None = None
    after_s: float | None = None
    attempts: tuple[int, ...] = (1,)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LocalDisruption | None:
        """Parse the operator's ``local_disruption`` (rendered templates included); ``None`` when disabled.

        ``enabled`` may be a rendered template such as ``"{{ params.simulate_eviction }}"``.
        """
        unknown = set(raw) - {"enabled", "signal", "after_log", "after_s", "attempts"}
        if unknown:
            raise PodSpecError(
                f"local_disruption has unknown keys {sorted(unknown)}: use enabled, signal, after_log, after_s, "
                "attempts."
            )
        enabled = str(raw.get("enabled", True)).strip().lower()
        if enabled not in _TRUE + _FALSE:
            raise PodSpecError(f"local_disruption.enabled is {raw.get('enabled')!r}: use true or false.")
        if enabled in _FALSE:
            return None
        sig = str(raw.get("signal", "SIGTERM")).upper()
        if sig not in ("SIGTERM", "SIGKILL"):
            raise PodSpecError(f"local_disruption.signal is {sig!r}: use 'SIGTERM' or 'SIGKILL'.")
        after_log, after_s = raw.get("after_log"), raw.get("after_s")
        if after_log is None and after_s is None:
            raise PodSpecError("local_disruption needs after_log (a regex) or after_s (seconds): set one.")
        if after_log is not None:
            try:
                re.compile(str(after_log))
            except re.error as exc:
                raise PodSpecError(f"local_disruption.after_log is not a valid regex ({exc}): fix it.") from None
        return cls(
            signal=sig,
            after_log=None if after_log is None else str(after_log),
            after_s=None if after_s is None else float(after_s),
            attempts=tuple(int(a) for a in raw.get("attempts", (1,))),
        )
