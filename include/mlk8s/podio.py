"""The contract between a pod and the operator that launched it: exit codes and the XCom result file.

KubernetesPodOperator's XCom sidecar reads ``/airflow/xcom/return.json`` from the main container. The local
backend runs the same command as a process and points ``MLK8S_XCOM_DIR`` at a local directory instead, so pod
code writes its result through :func:`write_result` and works unchanged in both places.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Where KubernetesPodOperator's sidecar expects the result.
KPO_XCOM_DIR = "/airflow/xcom"
XCOM_DIR_ENV = "MLK8S_XCOM_DIR"
RESULT_FILE = "return.json"

#: The job finished; its result (if any) is in the XCom file.
EXIT_OK = 0
#: A real error (bad code, bad data): retrying the same input will not help.
EXIT_ERROR = 1
#: Bad command line or spec: reported before any work starts.
EXIT_USAGE = 2
#: Interrupted (SIGTERM) after committing a checkpoint: relaunch to resume. Same value as BSD's EX_TEMPFAIL.
EXIT_INTERRUPTED = 75


def xcom_dir() -> Path:
    return Path(os.environ.get(XCOM_DIR_ENV, KPO_XCOM_DIR))


def write_result(result: Any) -> Path:
    """Write the task's return value atomically, so a reader never sees half a file."""
    directory = xcom_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / RESULT_FILE
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".return.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(result, fh, sort_keys=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
