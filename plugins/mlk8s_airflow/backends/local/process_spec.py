"""What the local backend runs for one pod: its main container translated into an exec array, an
environment, a working directory, an XCom directory and a grace period. Refuses, before any launch, a pod
it cannot run faithfully."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlk8s.pod_contract import KPO_XCOM_DIR, XCOM_DIR_ENV
from mlk8s_airflow.backends.local.env import resolve_env
from mlk8s_airflow.backends.podspec import PodSpecError, check_pod, main_container
from mlk8s_airflow.backends.var_refs import expand_var_refs

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
KUBELET_DEFAULT_GRACE_S = 30.0
_PYTHON_NAMES = re.compile(r"^python(3(\.\d+)?)?$")


@dataclass(frozen=True)
class LocalProcessSpec:
    pod_name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    xcom_dir: Path
    grace_s: float


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


def _working_dir(container: k8s.V1Container, scratch_dir: Path) -> Path:
    if not container.working_dir:
        return scratch_dir / "workdir"
    cwd = Path(container.working_dir)
    if not cwd.is_dir():
        raise PodSpecError(
            f"working_dir {container.working_dir!r} does not exist on this machine: create it or drop it "
            "for the local backend."
        )
    return cwd


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
    env = resolve_env(pod, container, inherited, worker_env)
    raw_argv = [*(container.command or []), *(container.args or [])]
    argv = [expand_var_refs(a, env).replace(KPO_XCOM_DIR, str(xcom_dir)) for a in raw_argv]
    argv[0] = _resolve_executable(argv[0], env)
    grace = pod.spec.termination_grace_period_seconds if pod.spec else None
    return LocalProcessSpec(
        pod_name=pod.metadata.name or "pod",
        argv=tuple(argv),
        env=env,
        cwd=_working_dir(container, scratch_dir),
        xcom_dir=xcom_dir,
        grace_s=float(KUBELET_DEFAULT_GRACE_S if grace is None else grace),
    )
