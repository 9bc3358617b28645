"""``python -m mlk8s.model_registry evaluate|publish|show``: the pod side of evaluate-and-publish.

Exit codes (mlk8s.pod_contract): 0 done (the result is in the XCom file), 2 bad flags or unusable input
(reported before any scoring), 1 a real error, including a pointer that moved since evaluation.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from mlk8s import pod_contract
from mlk8s.model_registry.model_files import ModelFiles, ModelFilesError, read_model
from mlk8s.model_registry.published import PublishedModel, Registry, RegistryError
from mlk8s.model_registry.verdict import Goal, decide
from mlk8s.storage import UriError

log = logging.getLogger("mlk8s.model_registry")
PROG = "python -m mlk8s.model_registry"


class UsageError(ValueError):
    """Bad input, found before any work: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate a trained model against the published one and publish it when it is not worse.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", required=True, metavar="URI", help="the registry root (a path or URI)")
    common.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    trained = argparse.ArgumentParser(add_help=False)
    trained.add_argument("--candidate", required=True, metavar="URI", help="a training output (model.json)")
    trained.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the task options the candidate was trained with (repeatable), as given to training",
    )

    evaluate = sub.add_parser("evaluate", parents=[common, trained], help="score the candidate and the live model")
    evaluate.add_argument("--data", default=None, metavar="URI", help="the dataset whose held-out rows are scored")
    evaluate.add_argument(
        "--data-partition",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="score on this partition of a Delta table --data, as training read it (repeatable)",
    )
    evaluate.add_argument(
        "--data-version", type=int, default=None, help="score on this version of a Delta table --data, as trained"
    )
    evaluate.add_argument("--metric", default="held_out_accuracy", help="the metric the decision compares")
    evaluate.add_argument("--goal", choices=[g.value for g in Goal], default=Goal.MAX.value, help="max: higher wins")
    evaluate.add_argument("--tolerance", type=float, default=0.0, help="how much worse still counts as not worse")
    evaluate.add_argument(
        "--force",
        type=str.lower,
        choices=("true", "false"),
        default="false",
        help="true: decide to publish without comparing (after the model's shapes changed on purpose)",
    )
    evaluate.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    publish = sub.add_parser("publish", parents=[common, trained], help="make the candidate the live model")
    publish.add_argument(
        "--expect-live",
        required=True,
        metavar="SHA256|none",
        help="the live model's weights_sha256 the candidate was evaluated against ('none': nothing was live)",
    )
    publish.add_argument("--run-key", default=None, help="the run that trained the candidate (kept in the pointer)")

    sub.add_parser("show", parents=[common], help="print the live model")
    return parser


def _options(raw: Sequence[str], flag: str = "--task-option", example: str = "hidden=128") -> dict[str, str]:
    options: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag}: {item!r} is not KEY=VALUE, e.g. {flag} {example}")
        options[key.strip()] = value.strip()
    return options


def _model_summary(model: ModelFiles | PublishedModel, metrics: dict[str, float | None]) -> dict[str, Any]:
    if isinstance(model, PublishedModel):
        return {
            "model_dir": model.model_dir,
            "weights_sha256": model.weights_sha256,
            "run_key": model.run_key,
            "published_at": model.published_at,
            "metrics": metrics,
        }
    return {"model_dir": model.directory.uri, "weights_sha256": model.sha256, "metrics": metrics}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _registry(uri: str) -> Registry:
    try:
        return Registry(uri)
    except UriError as exc:
        raise UsageError(f"--registry: {exc}") from exc


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from mlk8s.model_registry.scoring import Scorer
    from mlk8s.training.task import TaskUsageError

    if args.tolerance < 0:
        raise UsageError(f"--tolerance: must be >= 0, got {args.tolerance}")
    if args.threads < 1:
        raise UsageError(f"--threads: must be >= 1, got {args.threads}")
    if args.data_version is not None and args.data_version < 0:
        raise UsageError(f"--data-version: must be a Delta table version >= 0, got {args.data_version}")
    partition = _options(args.data_partition, "--data-partition", "run_key=2026-01-01")
    if (partition or args.data_version is not None) and not args.data:
        raise UsageError("--data-partition/--data-version select part of a Delta table: give it with --data")
    options = _options(args.task_option)
    registry = _registry(args.registry)
    candidate = read_model(args.candidate)
    live = registry.published()
    scorer = Scorer(
        data=args.data,
        seed=candidate.info.seed,
        threads=args.threads,
        data_partition=partition,
        data_version=args.data_version,
    )
    try:
        mine = scorer.score(candidate, options)
    except TaskUsageError as exc:
        raise UsageError(f"scoring the candidate: {exc}") from exc
    if mine.incomparable is not None:
        raise UsageError(f"--candidate: {args.candidate} cannot be scored on --data {args.data}: {mine.incomparable}")
    if args.metric not in mine.metrics:
        raise UsageError(f"--metric: {args.metric!r} is not a metric of this task; it reports {sorted(mine.metrics)}")
    theirs_metrics: dict[str, float | None] = {}
    incomparable: str | None = None
    if live is not None and live.weights_sha256 != candidate.sha256:
        try:
            theirs = scorer.score(
                read_model(live.model_dir, flag=f"the live model ({registry.uri})"), live.task_options
            )
            theirs_metrics, incomparable = theirs.metrics, theirs.incomparable
        except (ModelFilesError, TaskUsageError) as exc:
            incomparable = str(exc)
    verdict = decide(
        metric=args.metric,
        goal=Goal(args.goal),
        tolerance=args.tolerance,
        candidate=mine.metrics,
        published=None if live is None else theirs_metrics,
        same_weights=live is not None and live.weights_sha256 == candidate.sha256,
        incomparable=incomparable,
        force=args.force == "true",
    )
    result = {
        "decision": verdict.decision,
        "reason": verdict.reason,
        "metric": args.metric,
        "goal": args.goal,
        "tolerance": args.tolerance,
        "registry_uri": registry.uri,
        "candidate": _model_summary(candidate, mine.metrics),
        "published": None if live is None else _model_summary(live, theirs_metrics),
        "held_out_rows": mine.task_info.get("held_out_rows"),
    }
    log.info(
        "mlk8s: evaluated candidate %s=%s against %s: %s (%s)",
        args.metric,
        _fmt(mine.metrics.get(args.metric)),
        "no live model"
        if live is None
        else f"live {live.weights_sha256[:12]} {args.metric}={_fmt(theirs_metrics.get(args.metric))}",
        verdict.decision,
        verdict.reason,
    )
    return result


def publish(args: argparse.Namespace) -> dict[str, Any]:
    registry = _registry(args.registry)
    candidate = read_model(args.candidate)
    expect = None if args.expect_live.strip().lower() in ("", "none") else args.expect_live.strip()
    live, moved = registry.publish(
        candidate, expect_live=expect, task_options=_options(args.task_option), run_key=args.run_key
    )
    log.info(
        "mlk8s: %s model %s (%s) under %s",
        "published" if moved else "already live:",
        live.weights_sha256[:12],
        live.model_dir,
        registry.uri,
    )
    return {"moved": moved, "live": live.model_dump()}


def show(args: argparse.Namespace) -> dict[str, Any]:
    live = _registry(args.registry).published()
    return {"live": None if live is None else live.model_dump()}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    commands = {"evaluate": evaluate, "publish": publish, "show": show}
    try:
        result = commands[args.command](args)
    except (UsageError, ModelFilesError) as exc:
        return pod_contract.report_error(PROG, str(exc), pod_contract.EXIT_USAGE, debug=args.log_level == "DEBUG")
    except RegistryError as exc:
        return pod_contract.report_error(PROG, str(exc), pod_contract.EXIT_ERROR, debug=args.log_level == "DEBUG")
    if args.command == "show":
        print(json.dumps(result, sort_keys=True, indent=2))
    else:
        pod_contract.write_result(result)
    return pod_contract.EXIT_OK
