"""One running local pod: started in its own session, its output streamed into the task log line by line,
its exit code classified, its XCom file read as KPO's sidecar would, and stopped as the kubelet stops a
container (SIGTERM, the grace period, then SIGKILL)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlk8s.disruption import PodOutcome, classify_exit
from mlk8s.pod_contract import RESULT_FILE
from mlk8s_airflow.backends.local.disruption import LocalDisruption
from mlk8s_airflow.backends.local.process_spec import LocalProcessSpec


@dataclass
class LocalRunResult:
    returncode: int
    outcome: PodOutcome
    xcom: Any = None
    disrupted_by_us: bool = False
    log_tail: list[str] = field(default_factory=list)


class LocalPodProcess:
    """One running local pod. ``run()`` blocks, streaming output; ``terminate()`` may be called from another
    thread (the task's ``on_kill``) and follows Kubernetes: SIGTERM, then SIGKILL after the grace period."""

    def __init__(self, spec: LocalProcessSpec, *, log: logging.Logger | Any) -> None:
        self.spec = spec
        self.log = log
        self._proc: subprocess.Popen[str] | None = None
        self._disrupted_by_us = False
        self._lock = threading.Lock()

    def _signal(self, sig: signal.Signals) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            if sig is signal.SIGKILL:  # the whole "container" dies, children included
                os.killpg(proc.pid, sig)
            else:  # like the kubelet: the signal goes to the main process only
                proc.send_signal(sig)

    def terminate(self) -> None:
        """Stop the pod as the kubelet does: SIGTERM, wait the grace period, then SIGKILL."""
        self._signal(signal.SIGTERM)
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=self.spec.grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)

    def _disrupt(self, disruption: LocalDisruption) -> None:
        sig = signal.Signals[disruption.signal]
        self.log.warning("mlk8s: simulating an eviction of pod %s with %s", self.spec.pod_name, sig.name)
        self._disrupted_by_us = True
        if sig is signal.SIGTERM:
            # An eviction: the grace period, then SIGKILL, as on a node (in the background: we keep reading logs).
            threading.Thread(target=self.terminate, daemon=True).start()
        else:
            self._signal(sig)

    def run(
        self,
        *,
        disruption: LocalDisruption | None = None,
        on_line: Callable[[str], None] | None = None,
        read_xcom: bool = True,
    ) -> LocalRunResult:
        spec = self.spec
        spec.xcom_dir.mkdir(parents=True, exist_ok=True)
        spec.cwd.mkdir(parents=True, exist_ok=True)
        (spec.xcom_dir / RESULT_FILE).unlink(missing_ok=True)
        self.log.info("mlk8s: starting local pod %s: %s", spec.pod_name, " ".join(spec.argv))
        pattern = re.compile(disruption.after_log) if disruption and disruption.after_log else None
        tail: list[str] = []
        with self._lock:
            self._proc = subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env),
                cwd=spec.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        proc = self._proc
        timer: threading.Timer | None = None
        if disruption is not None and disruption.after_s is not None:
            timer = threading.Timer(disruption.after_s, self._disrupt, args=(disruption,))
            timer.daemon = True
            timer.start()
        fired = False
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                self.log.info("%s", line)
                tail = [*tail[-19:], line]
                if on_line is not None:
                    on_line(line)
                if pattern is not None and not fired and pattern.search(line):
                    fired = True
                    assert disruption is not None
                    self._disrupt(disruption)
            returncode = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:  # we are being torn down (task killed): never leave the process behind
                self.terminate()
        outcome = classify_exit(returncode)
        xcom = None
        result_file = spec.xcom_dir / RESULT_FILE
        if read_xcom and returncode == 0 and result_file.exists():
            xcom = json.loads(result_file.read_text())
        self.log.info("mlk8s: local pod %s ended: %s", spec.pod_name, outcome.reason)
        return LocalRunResult(returncode, outcome, xcom, self._disrupted_by_us, tail)
