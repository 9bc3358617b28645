"""The contract between a pod and the operator that launched it: exit codes and the XCom result file.

KubernetesPodOperator's XCom sidecar reads ``/airflow/xcom/return.json`` from the main container. The local
backend runs the same command as a process and points ``MLK8S_XCOM_DIR`` at a local directory instead, so pod
code writes its result through :func:`write_result` and works unchanged in both places.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlk8s.storage import local_location, write_atomic

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
    write_atomic(local_location(target), json.dumps(result, sort_keys=True).encode())
    return target


def report_error(prog: str, message: str, code: int, *, debug: bool = False) -> int:
    """Print the contract's one-line error on stderr and return ``code``.

    Operators show the last lines of a failed pod's log, so an error is one line naming the flag or file
    and the fix; the traceback is printed only with ``--log-level debug`` (``debug=True``), from the
    exception being handled.
    """
    import sys
    import traceback

    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    first = " ".join(str(message).split())
    print(f"{prog}: error: {first}", file=sys.stderr, flush=True)
    return code
