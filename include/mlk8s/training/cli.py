"""``python -m mlk8s.training``: train a torch model on a pod that may be killed at any moment.

Exit codes (mlk8s.pod_contract): 0 done; 75 stopped by SIGTERM (an emergency checkpoint was written if it fitted the
grace period, otherwise the last committed one stands), relaunch to resume; 1 a real error (including a
fenced-off zombie); 2 bad flags or input, reported before training starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence

from mlk8s import pod_contract
from mlk8s.checkpoint import CheckpointError, CheckpointStore, FencedError
from mlk8s.storage import UriError, resolve
from mlk8s.training.task import TaskUsageError, load_task_class

log = logging.getLogger("mlk8s.training")

DEFAULT_TASK = "mlk8s.training.example:ClassifierTask"


def build_parser() -> argparse.ArgumentParser:
    from mlk8s.training.loop import TrainConfig

    d = TrainConfig(checkpoint_uri="", output_uri="")
    p = argparse.ArgumentParser(
        prog="python -m mlk8s.training",
        description=(
            "Train a torch model with checkpoints that survive eviction: every N steps, at epoch ends and on "
            "SIGTERM (or SIGINT); a relaunch with the same flags resumes bit-exactly. Exit codes: 0 done, "
            "75 interrupted (relaunch to resume), 1 error, 2 bad usage. URIs may be plain paths, file://, s3:// "
            "or gs://."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint-uri", required=True, help="where checkpoints live; reuse it to resume")
    p.add_argument("--output-uri", required=True, help="where model.safetensors and model.json are written")
    p.add_argument(
        "--task",
        default=DEFAULT_TASK,
        help="dotted path package.module:Class of a mlk8s.training.TrainingTask subclass (model, data, step)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="data URI for the task; the built-in task reads Parquet with columns 'embedding' (list<float>) and "
        "'label' (int or string), and trains on scikit-learn's bundled digits when this is omitted",
    )
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task-specific option, repeatable; the built-in task knows hidden, layers, dropout, held-out, shifts",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training data (>= 0)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds init, dropout, data order and the split")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step (>= 1)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (> 0)")
    p.add_argument(
        "--checkpoint-every-steps",
        type=int,
        default=d.checkpoint_every_steps,
        help="commit a checkpoint every N optimizer steps; 0 turns step checkpoints off",
    )
    p.add_argument(
        "--checkpoint-every-epochs",
        type=int,
        default=d.checkpoint_every_epochs,
        help="commit a checkpoint at the end of every N-th epoch; 0 turns epoch checkpoints off",
    )
    p.add_argument(
        "--keep-last", type=int, default=d.keep_last, help="committed checkpoints to keep (>= 1), plus the resumed one"
    )
    p.add_argument(
        "--termination-grace-seconds",
        type=float,
        default=d.termination_grace_seconds,
        help="the pod's terminationGracePeriodSeconds: on SIGTERM an emergency checkpoint is written only if "
        "its measured save time fits in what is left; 0 never writes one",
    )
    p.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=d.heartbeat_seconds,
        help="how often progress is recorded beside the checkpoints (for the work-lost figure); 0 = every step",
    )
    p.add_argument(
        "--log-every-steps", type=int, default=d.log_every_steps, help="progress log interval; 0 = epoch ends only"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="auto picks cuda if present")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 + GradScaler on cuda, bfloat16 on cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="torch CPU threads; fixed (not the node's core count) so a resume on another node stays bit-exact",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log verbosity on stderr; the 'mlk8s: ...' event lines the operator parses are INFO",
    )
    return p


def _options(raw: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"--task-option: {item!r} is not KEY=VALUE, e.g. --task-option hidden=128")
        options[key.strip()] = value.strip()
    return options


def parse_config(argv: Sequence[str] | None = None) -> tuple[object, argparse.Namespace]:
    """Parse and range-check flags; exits with code 2 and a message naming the flag on bad values."""
    from mlk8s.training.loop import TrainConfig

    parser = build_parser()
    args = parser.parse_args(argv)
    checks = [
        (args.epochs < 0, "--epochs", f"must be >= 0, got {args.epochs}"),
        (args.batch_size < 1, "--batch-size", f"must be >= 1, got {args.batch_size}"),
        (not args.lr > 0, "--lr", f"must be > 0, got {args.lr}"),
        (args.checkpoint_every_steps < 0, "--checkpoint-every-steps", "must be >= 0 (0 turns them off)"),
        (args.checkpoint_every_epochs < 0, "--checkpoint-every-epochs", "must be >= 0 (0 turns them off)"),
        (args.keep_last < 1, "--keep-last", f"must be >= 1, got {args.keep_last}"),
        (args.termination_grace_seconds < 0, "--termination-grace-seconds", "must be >= 0"),
        (args.heartbeat_seconds < 0, "--heartbeat-seconds", "must be >= 0"),
        (args.log_every_steps < 0, "--log-every-steps", "must be >= 0"),
        (args.threads < 1, "--threads", f"must be >= 1, got {args.threads}"),
    ]
    for bad, flag, message in checks:
        if bad:
            parser.error(f"{flag}: {message}")
    for flag, value in (("--checkpoint-uri", args.checkpoint_uri), ("--output-uri", args.output_uri)):
        try:
            resolve(value)
        except UriError as exc:
            parser.error(f"{flag}: {exc}")
    config = TrainConfig(
        checkpoint_uri=args.checkpoint_uri,
        output_uri=args.output_uri,
        task=args.task,
        data=args.data,
        task_options=_options(args.task_option, parser),
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every_steps=args.checkpoint_every_steps,
        checkpoint_every_epochs=args.checkpoint_every_epochs,
        keep_last=args.keep_last,
        termination_grace_seconds=args.termination_grace_seconds,
        heartbeat_seconds=args.heartbeat_seconds,
        log_every_steps=args.log_every_steps,
        device=args.device,
        amp=args.amp,
        threads=args.threads,
    )
    return config, args


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
    from mlk8s.training.loop import StopSignal, TrainConfig, Trainer

    # First, so that a SIGTERM during start-up is honoured (exit 75) rather than killing the process.
    stop = StopSignal()
    stop.install()
    config, args = parse_config(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # Must be in the environment before CUDA initialises for deterministic cuBLAS.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    assert isinstance(config, TrainConfig)
    try:
        task_cls = load_task_class(config.task)
        _check_writable("--checkpoint-uri", config.checkpoint_uri)
        _check_writable("--output-uri", config.output_uri)
        _check_result_dir()
        trainer = Trainer(config, task_cls, stop)
        trainer.prepare()
    except TaskUsageError as exc:
        print(f"python -m mlk8s.training: error: {exc}", file=sys.stderr)
        return pod_contract.EXIT_USAGE
    try:
        outcome = trainer.run()
    except TaskUsageError as exc:  # a checkpoint written with other flags
        print(f"python -m mlk8s.training: error: {exc}", file=sys.stderr)
        return pod_contract.EXIT_USAGE
    except FencedError as exc:
        log.error("mlk8s: fenced: %s", exc)
        return pod_contract.EXIT_ERROR
    except Exception:
        log.exception("mlk8s: training failed")
        return pod_contract.EXIT_ERROR
    pod_contract.write_result(outcome.result)
    # Interpreter shutdown puts Python-level handlers back to SIG_DFL, so a SIGTERM during teardown would turn a
    # finished run into a signal death; ignoring it now (the result is written) keeps the exit code honest.
    for sig in StopSignal.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    return outcome.exit_code
