"""The local backend: run a pod's main container as a local process, built from the very same ``V1Pod``.

This is what makes a DAG testable with no cluster: KubernetesPodOperator's own machinery builds the pod spec,
then, instead of sending it to an API server, we translate the main container into an exec array, an
environment and a working directory, run it, stream its output into the task log line by line, map its exit
code the way the kubelet would, and read ``/airflow/xcom/return.json`` (remapped to a local directory) as
KPO's XCom sidecar does. Killing the process with SIGTERM or SIGKILL is how an eviction is simulated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlk8s.disruption import PodOutcome, classify_exit
from mlk8s.pod_contract import KPO_XCOM_DIR, RESULT_FILE, XCOM_DIR_ENV
from mlk8s_airflow.backends.podspec import PodSpecError, check_pod, main_container

if TYPE_CHECKING:
    from kubernetes.client import models as k8s

#: Variables of the Airflow worker's own environment that a local "pod" inherits. Everything else (Airflow's
#: database URL, its secrets) stays out, as it would in a real pod.
DEFAULT_PASSTHROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OMP_NUM_THREADS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN_PATH",
)
#: Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_S = 30.0
_PYTHON_NAMES = re.compile(r"^python(3(\.\d+)?)?$")
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


@dataclass(frozen=True)
class LocalProcessSpec:
    """What the local backend runs for one pod: the translation of its main container."""

    pod_name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    xcom_dir: Path
    grace_s: float


@dataclass(frozen=True)
class LocalDisruption:
    """A simulated eviction: send ``signal`` to the pod's process once ``after_log`` matches a log line (or
    ``after_s`` seconds have passed), on the listed launch attempts only (1 = the first pod)."""

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
        if enabled not in ("true", "false", "1", "0", "yes", "no"):
            raise PodSpecError(f"local_disruption.enabled is {raw.get('enabled')!r}: use true or false.")
        if enabled in ("false", "0", "no"):
            return None
        sig = str(raw.get("signal", "SIGTERM")).upper()
        if sig not in ("SIGTERM", "SIGKILL", "SIGINT"):
            raise PodSpecError(f"local_disruption.signal is {sig!r}: use 'SIGTERM' or 'SIGKILL'.")
        after_log, after_s = raw.get("after_log"), raw.get("after_s")
        if after_log is None and after_s is None:
            raise PodSpecError("local_disruption needs after_log (a regex) or after_s (seconds): set one.")
        if after_log is not None:
            try:
                re.compile(str(after_log))
            except re.error as exc:
                raise PodSpecError(f"local_disruption.after_log is not a valid regex ({exc}): fix it.") from None
        attempts = tuple(int(a) for a in raw.get("attempts", (1,)))
        return cls(
            signal=sig,
            after_log=None if after_log is None else str(after_log),
            after_s=None if after_s is None else float(after_s),
            attempts=attempts,
        )


@dataclass
class LocalRunResult:
    returncode: int
    outcome: PodOutcome
    xcom: Any = None
    disrupted_by_us: bool = False
    log_tail: list[str] = field(default_factory=list)


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes, unknown refs stay as they are."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(repl, value)


def _quantity_to_number(quantity: str, *, cpu: bool) -> float:
    """Parse a Kubernetes resource quantity ("500m", "2", "1Gi", "128974848") into cores or bytes."""
    units = {
        "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }  # fmt: skip
    match = re.match(r"^([0-9.]+)([A-Za-z]*)$", quantity.strip())
    if not match or (match.group(2) and match.group(2) not in units):
        raise PodSpecError(f"resource quantity {quantity!r} is not valid: use e.g. '500m', '2', '4Gi'.")
    return float(match.group(1)) * units.get(match.group(2), 1.0)


def _resource_value(container: k8s.V1Container, resource: str, divisor: str | None) -> str:
    kind, _, name = resource.partition(".")
    resources = container.resources
    amounts: Mapping[str, str] = (getattr(resources, kind, None) or {}) if resources else {}
    cpu = name == "cpu"
    if name in amounts:
        value = _quantity_to_number(str(amounts[name]), cpu=cpu)
    elif cpu:  # unset limits default to the node's allocatable, as on a node
        value = float(os.cpu_count() or 1)
    else:
        value = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    div = _quantity_to_number(divisor, cpu=cpu) if divisor else 1.0
    return str(math.ceil(value / div))


def _field_value(pod: k8s.V1Pod, path: str) -> str:
    meta = pod.metadata
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid or "",
        "spec.nodeName": socket.gethostname(),
        "spec.serviceAccountName": (pod.spec.service_account_name if pod.spec else None) or "default",
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.match(r"^metadata\.(labels|annotations)\['([^']+)'\]$", path)
    if match:
        values = (meta.labels if match.group(1) == "labels" else meta.annotations) or {}
        return str(values.get(match.group(2), ""))
    raise PodSpecError(f"env fieldRef {path!r} is not supported by the local backend: use a plain value.")


def _resolve_env(
    pod: k8s.V1Pod, container: k8s.V1Container, inherited: Mapping[str, str], worker_env: Mapping[str, str]
) -> dict[str, str]:
    env: dict[str, str] = dict(inherited)
    for source in container.env_from or []:
        ref = source.secret_ref or source.config_map_ref
        kind = "Secret" if source.secret_ref else "ConfigMap"
        if ref is not None and not ref.optional:
            raise PodSpecError(
                f"env_from {kind} {ref.name!r} cannot be read by the local backend: list the variables you "
                "need as secrets/env_vars instead (each is then taken from the worker's environment), or mark "
                "it optional."
            )
    for var in container.env or []:
        if var.value_from is None:
            env[var.name] = _expand(var.value or "", env)
            continue
        src = var.value_from
        if src.field_ref is not None:
            env[var.name] = _field_value(pod, src.field_ref.field_path)
        elif src.resource_field_ref is not None:
            ref = src.resource_field_ref
            env[var.name] = _resource_value(container, ref.resource, ref.divisor)
        elif src.secret_key_ref is not None or src.config_map_key_ref is not None:
            ref = src.secret_key_ref or src.config_map_key_ref
            kind = "Secret" if src.secret_key_ref is not None else "ConfigMap"
            if var.name in worker_env:
                env[var.name] = worker_env[var.name]
            elif not ref.optional:
                raise PodSpecError(
                    f"env var {var.name!r} comes from {kind} {ref.name!r} key {ref.key!r}, which the local "
                    f"backend cannot read: export {var.name} in the Airflow worker's environment (it is passed "
                    "through to the local process, and to no other variable), or use the kubernetes backend."
                )
    return env


def _resolve_executable(argv0: str, env: Mapping[str, str]) -> str:
    """``python`` in a pod means the image's Python; locally, the one Airflow runs on (same packages)."""
    if _PYTHON_NAMES.match(argv0):
        return sys.executable
    if os.sep in argv0:
        if not os.access(argv0, os.X_OK):
            raise PodSpecError(f"command {argv0!r} is not an executable file here: fix cmds=[...].")
        return argv0
    found = shutil.which(argv0, path=env.get("PATH"))
    if found is None:
        raise PodSpecError(f"command {argv0!r} is not on PATH here: fix cmds=[...] or install it.")
    return found


def process_spec_from_pod(
    pod: k8s.V1Pod,
    *,
    container_name: str,
    scratch_dir: Path,
    worker_env: Mapping[str, str] | None = None,
    passthrough: tuple[str, ...] = DEFAULT_PASSTHROUGH,
) -> LocalProcessSpec:
    """Translate a pod's main container into a local process. Raises ``PodSpecError`` before any launch."""
    check_pod(pod, container_name=container_name, require_command=True)
    worker_env = dict(os.environ if worker_env is None else worker_env)
    container = main_container(pod, container_name)
    xcom_dir = scratch_dir / "xcom"
    inherited = {k: worker_env[k] for k in passthrough if k in worker_env}
    inherited[XCOM_DIR_ENV] = str(xcom_dir)
    inherited.setdefault("HOSTNAME", pod.metadata.name or "pod")
    env = _resolve_env(pod, container, inherited, worker_env)
    raw_argv = [*(container.command or []), *(container.args or [])]
    argv = [_expand(a, env).replace(KPO_XCOM_DIR, str(xcom_dir)) for a in raw_argv]
    argv[0] = _resolve_executable(argv[0], env)
    if container.working_dir:
        cwd = Path(container.working_dir)
        if not cwd.is_dir():
            raise PodSpecError(
                f"working_dir {container.working_dir!r} does not exist on this machine: create it or drop it "
                "for the local backend."
            )
    else:
        cwd = scratch_dir / "workdir"
    grace = pod.spec.termination_grace_period_seconds if pod.spec else None
    return LocalProcessSpec(
        pod_name=pod.metadata.name or "pod",
        argv=tuple(argv),
        env=env,
        cwd=cwd,
        xcom_dir=xcom_dir,
        grace_s=float(DEFAULT_GRACE_S if grace is None else grace),
    )


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


def scratch_root() -> Path:
    """Where local pods get their working and XCom directories (a fresh one per pod, like a container)."""
    root = Path(os.environ.get("MLK8S_LOCAL_SCRATCH", Path(tempfile.gettempdir()) / "mlk8s-local-pods"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_scratch_dir(pod_name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{pod_name}-{int(time.time())}-", dir=scratch_root()))
