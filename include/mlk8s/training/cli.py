"""``python -m mlk8s.training``: train a torch model on a pod that may be killed at any moment.

Exit codes (mlk8s.pod_contract): 0 done; 75 stopped by SIGTERM (an emergency checkpoint was written if it fitted the
grace period, otherwise the last committed one stands), relaunch to resume; 1 a real error (including a
fenced-off zombie); 2 bad flags or input, reported before training starts.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from mlk8s import pod_contract
from mlk8s.checkpoint import CheckpointError, CheckpointStore, FencedError
from mlk8s.storage import UriError, resolve
from mlk8s.training.config import PROG, TrainConfig, parse_config
from mlk8s.training.signals import StopSignal
from mlk8s.training.task import TaskUsageError, load_task_class

log = logging.getLogger("mlk8s.training")


def _check_uris(config: TrainConfig) -> None:
    for flag, value in (("--checkpoint-uri", config.checkpoint_uri), ("--output-uri", config.output_uri)):
        try:
            resolve(value)
        except UriError as exc:
            raise TaskUsageError(flag, str(exc)) from exc


def _check_writable(flag: str, uri: str) -> None:
    try:
        CheckpointStore(uri).ensure_writable()
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


def main(argv: Sequence[str] | None = None) -> int:
    from mlk8s.training.trainer import Trainer

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
        _check_uris(config)
        task_cls = load_task_class(config.task)
        _check_writable("--checkpoint-uri", config.checkpoint_uri)
        _check_writable("--output-uri", config.output_uri)
        _check_result_dir()
        trainer = Trainer(config, task_cls, stop)
        trainer.prepare()
        outcome = trainer.run()
    except TaskUsageError as exc:  # bad flags, data, or a checkpoint written with other flags
        return pod_contract.report_error(PROG, str(exc), pod_contract.EXIT_USAGE, debug=debug)
    except FencedError as exc:
        log.error("mlk8s: fenced: %s", exc)
        return pod_contract.EXIT_ERROR
    except Exception:
        log.exception("mlk8s: training failed")
        return pod_contract.EXIT_ERROR
    pod_contract.write_result(outcome.result)
    # Interpreter shutdown puts Python-level handlers back to SIG_DFL, so a SIGTERM during teardown would turn a
    # finished run into a signal death; ignoring it now (the result is written) keeps the exit code honest.
    StopSignal.ignore()
    return outcome.exit_code
