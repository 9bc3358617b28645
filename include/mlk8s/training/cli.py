"""``python -m mlk8s.training``: train a torch model on a pod that may be killed at any moment.

Exit codes (mlk8s.pod_contract): 0 done; 75 stopped by SIGTERM (an emergency checkpoint was written if it fitted the
grace period, otherwise the last committed one stands), relaunch to resume; 1 a real error (a fenced-off zombie,
a NaN loss, storage that timed out or failed); 2 bad flags or input (including checkpoints written with other
flags or on other data), reported before training starts. Errors are one line on stderr; ``--log-level debug``
adds the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlk8s import pod_contract
from mlk8s.checkpoint import CheckpointError, CheckpointStore, FencedError
from mlk8s.checkpoint.claims import ClaimError
from mlk8s.storage import StorageInterrupted, StorageTimeout, UriError, resolve
from mlk8s.training.config import PROG, TrainConfig, parse_config
from mlk8s.training.numerics import NonFiniteError
from mlk8s.training.signals import StopSignal
from mlk8s.training.task import TaskUsageError, load_task_class

if TYPE_CHECKING:
    from mlk8s.training.trainer import Outcome

log = logging.getLogger("mlk8s.training")


def _check_uris(config: TrainConfig) -> None:
    for flag, value in (("--checkpoint-uri", config.checkpoint_uri), ("--output-uri", config.output_uri)):
        try:
            resolve(value)
        except UriError as exc:
            raise TaskUsageError(flag, str(exc)) from exc


def _check_writable(flag: str, uri: str, config: TrainConfig, stop: StopSignal) -> None:
    try:
        loc = resolve(uri, timeout_s=config.storage_timeout_seconds)
        CheckpointStore(loc, cancelled=lambda: stop.requested).ensure_writable()
    except (CheckpointError, UriError) as exc:
        raise TaskUsageError(flag, f"{exc}; give a location this pod can write") from exc


def _check_result_dir() -> None:
    directory = pod_contract.xcom_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise TaskUsageError(
            pod_contract.XCOM_DIR_ENV,
            f"cannot write the result file in {directory} ({exc}); set {pod_contract.XCOM_DIR_ENV}",
        ) from exc


def _run(config: TrainConfig, stop: StopSignal) -> Outcome:
    from mlk8s.training.trainer import Trainer

    _check_uris(config)
    task_cls = load_task_class(config.task)
    _check_writable("--checkpoint-uri", config.checkpoint_uri, config, stop)
    _check_writable("--output-uri", config.output_uri, config, stop)
    _check_result_dir()
    trainer = Trainer(config, task_cls, stop)
    trainer.prepare()
    return trainer.run()


def main(argv: Sequence[str] | None = None) -> int:
    """The entrypoint; every way a run ends maps to one exit code of the pod contract, with a one-line error."""
    # First, so that a SIGTERM during start-up is honoured (exit 75) rather than killing the process.
    stop = StopSignal()
    stop.install()
    try:
        config = parse_config(argv)
    except TaskUsageError as exc:
        return pod_contract.report_error(PROG, str(exc), pod_contract.EXIT_USAGE)
    debug = config.log_level == "DEBUG"
    logging.basicConfig(
        level=config.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # Must be in the environment before CUDA initialises for deterministic cuBLAS.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        outcome = _run(config, stop)
    except TaskUsageError as exc:  # bad flags or data, or checkpoints written with other flags or on other data
        return pod_contract.report_error(PROG, str(exc), pod_contract.EXIT_USAGE, debug=debug)
    except StorageInterrupted as exc:  # SIGTERM while waiting on storage at start-up: nothing was lost
        return pod_contract.report_error(PROG, str(exc), pod_contract.EXIT_INTERRUPTED, debug=debug)
    except FencedError as exc:
        return pod_contract.report_error(PROG, f"fenced: {exc}", pod_contract.EXIT_ERROR, debug=debug)
    except (NonFiniteError, StorageTimeout, ClaimError, CheckpointError) as exc:
        return pod_contract.report_error(PROG, str(exc), pod_contract.EXIT_ERROR, debug=debug)
    except OSError as exc:  # storage that failed outright (not a timeout): say which call, retry may help
        return pod_contract.report_error(PROG, f"storage error: {exc}", pod_contract.EXIT_ERROR, debug=debug)
    except Exception:  # a bug: keep the traceback, it is the only way to find it
        log.exception("mlk8s: training failed")
        return pod_contract.EXIT_ERROR
    pod_contract.write_result(outcome.result)
    # Interpreter shutdown puts Python-level handlers back to SIG_DFL, so a SIGTERM during teardown would turn a
    # finished run into a signal death; ignoring it now (the result is written) keeps the exit code honest.
    StopSignal.ignore()
    return outcome.exit_code
