"""Container probes as the kubelet runs them: httpGet, tcpSocket and exec, on the probe's own schedule.

A :class:`ProbeState` is fed the time and answers whether the probe is due; its result counts toward
``successThreshold`` / ``failureThreshold`` after ``initialDelaySeconds``, every ``periodSeconds``, each attempt
bounded by ``timeoutSeconds`` (Kubernetes' defaults: 0, 10, 1, 1, 3). ``httpGet`` connects from the node (the
root namespace) to the pod IP, as a real kubelet does; a 2xx or 3xx answer is success. ``exec`` runs inside
the container and succeeds on exit code 0. ``grpc`` probes are not run (they count as success; nothing in
this project uses them).
"""

from __future__ import annotations

import http.client
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class ProbeState:
    """Schedule and counters of one probe of one container run."""

    probe: Mapping[str, Any]
    started_at: float
    successes: int = 0
    failures: int = 0
    last_run: float | None = None
    #: The probe's verdict so far: None before it has decided, then True (passing) or False (failed).
    verdict: bool | None = None

    def setting(self, key: str, default: int) -> int:
        """A probe setting; unset (or 0, which the API server defaults away) means Kubernetes' default."""
        return int(self.probe.get(key) or default)

    @property
    def period_s(self) -> int:
        return self.setting("periodSeconds", 10)

    @property
    def timeout_s(self) -> int:
        return self.setting("timeoutSeconds", 1)

    def due(self, now: float) -> bool:
        if now < self.started_at + int(self.probe.get("initialDelaySeconds") or 0):
            return False
        return self.last_run is None or now >= self.last_run + self.period_s

    def record(self, ok: bool, now: float) -> bool | None:
        """Count one result; returns the verdict when it changes."""
        self.last_run = now
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.setting("successThreshold", 1) and self.verdict is not True:
                self.verdict = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.setting("failureThreshold", 3) and self.verdict is not False:
                self.verdict = False
                return False
        return None


def _port(value: Any, ports: Sequence[Mapping[str, Any]]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in ports:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"named port {value!r} not found in the container's ports")


def run_probe(
    probe: Mapping[str, Any],
    pod_ip: str,
    container_ports: Sequence[Mapping[str, Any]],
    exec_argv: Callable[[Sequence[str]], list[str]],
    exec_env: Mapping[str, str],
) -> bool:
    """One attempt of ``probe`` against a container; False on any error or timeout."""
    timeout = int(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            action = probe["httpGet"]
            host = action.get("host") or pod_ip
            conn_type = http.client.HTTPSConnection if action.get("scheme") == "HTTPS" else http.client.HTTPConnection
            conn = conn_type(host, _port(action.get("port"), container_ports), timeout=timeout)
            try:
                headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
                conn.request("GET", action.get("path") or "/", headers=headers)
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        if "tcpSocket" in probe:
            action = probe["tcpSocket"]
            with socket.create_connection(
                (action.get("host") or pod_ip, _port(action.get("port"), container_ports)), timeout=timeout
            ):
                return True
        if "exec" in probe:
            result = subprocess.run(
                exec_argv(list(probe["exec"].get("command") or [])),
                env=dict(exec_env),
                capture_output=True,
                timeout=timeout,
            )
            return result.returncode == 0
    except (OSError, ValueError, subprocess.TimeoutExpired, http.client.HTTPException):
        return False
    return True
