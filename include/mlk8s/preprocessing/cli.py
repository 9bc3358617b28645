"""The command line of ``python -m mlk8s.preprocessing``, the driver pod's entrypoint: flags, exit codes, errors.

Everything that can be checked is checked before the Ray job starts (:mod:`.plan`); a usage error exits 2 and
leaves the output as it was. Errors found later keep the pod contract too: bad input (a file that does not
parse, even when a Ray worker found it) exits 2, anything else 1, each with one line naming the file or flag;
the traceback only with ``--log-level debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import textwrap
from typing import Any

from mlk8s import ray_driver
from mlk8s.pod_contract import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, report_error, write_result

logger = logging.getLogger("mlk8s.preprocessing")

PROG = "python -m mlk8s.preprocessing"
DEFAULT_VACUUM_RETENTION_HOURS = 168

EPILOG = textwrap.dedent(
    """\
    Input (--input): a file or directory, local or a pyarrow.fs URI (file://, s3://, gs://, hdfs://...).
      Parquet (.parquet), JSON lines (.jsonl, .ndjson, .json, .jsonl.gz) or raw text/HTML files
      (.txt, .md, .html, .htm; each file becomes one document with id = its path under --input). Names
      starting with '_' or '.' are ignored. A Delta table (_delta_log/) or an output of the old layout
      (_manifest.json) is read through its commit: its current version's files, partition values as columns.
      Parquet files whose schemas differ are refused unless schema.fields declares the differing columns.

    Pipeline (--pipeline): a JSON or YAML file, a URI, or inline JSON. Without it, the default document
      pipeline runs: html_to_text, clean_text, text_features, non_empty_text (filter), embed
      (all-MiniLM-L6-v2, 384-dim list<float32> 'embedding'). Other columns (id, label, ...) pass through.
      Spec keys: steps: [{use, kind, args, batch_size, concurrency, num_cpus, num_gpus}],
      schema: {fields: {name: type}, extra: drop|keep, evolve: true|false}, batch_size.
      Built-in maps: html_to_text, clean_text, text_features, to_schema; filters: non_empty_text,
      min_words; actor: embed. Your own: use: a dotted path to fn(table: pyarrow.Table, **args) returning
      a Table (kind: map, the default) or a boolean mask (kind: filter), or a class (kind: actor).
      Your module must be importable on the driver and on the Ray workers.

    Output (--output): a Delta Lake table (created if missing). --partition KEY=VALUE names the partition
      this run replaces, in ONE commit (a rerun never duplicates it; other partitions are untouched);
      without it a run replaces the whole table. Workers write Parquet parts (page checksums on); only the
      driver commits, after every part is written; a killed run leaves no visible rows. The table's schema
      is the pipeline's output schema; a change is refused unless schema.evolve: true (adds columns).
      Read it with deltalake, Polars, DuckDB, Spark, ray.data.read_delta or mlk8s.preprocessing.read_output.

    Exactly once (--txn-app-id ID --txn-version N, what the operator passes: the task run and its try):
      a version already committed is not committed again; a relaunch that finds its version committed
      exits 0 at once with the result rebuilt from the commit; a driver that finds it (or a newer one)
      committed by another driver while it ran is fenced: it commits nothing and exits 1.

    --validate-only runs the checks, including a dry run of every step on the first input rows IN THIS
      PROCESS: your own transforms are imported and called, so their side effects (files written, network
      calls) happen. It creates nothing in --output and starts no Ray job.

    Ray: RAY_ADDRESS (or --ray-address) names the cluster, e.g. the KubeRay head service; token auth via
      RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH. The driver joins the pool as a zero-resource Ray node unless a
      raylet of it runs on this host; a pool that does not answer within --ray-connect-timeout-s fails in one
      line (exit 1), a head lost mid-run ends the run after --ray-head-lost-timeout-s. Without an address a
      private local cluster is started (never an existing one attached to by accident). A step whose num_cpus/num_gpus
      fit no Ray node fails after --resource-wait-s (one line naming the step).

    Result: JSON written to $MLK8S_XCOM_DIR/return.json (default /airflow/xcom/return.json) with
      input_rows, output_rows, filtered_rows, output_bytes, files, duration_s, rows_per_s, output_uri,
      table_uri, delta_version, partition, manifest_uri (the commit's log entry), content_hash, attempt_id.
    Exit codes: 0 done (or already committed), 1 failed while running or fenced (the table is as it was),
      2 bad arguments/spec/input, even when found by a Ray worker (one line: the file and 1-based line),
      75 interrupted by SIGTERM before committing (relaunch; the table is as it was).
    """
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ray Data preprocessing: documents in, cleaned text, features and embeddings out, "
        "committed exactly once to a Delta Lake table.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, metavar="URI", help="input file or directory (path or URI)")
    parser.add_argument("--output", required=True, metavar="TABLE_URI", help="the output Delta table (path or URI)")
    parser.add_argument("--pipeline", metavar="SPEC", help="pipeline spec: JSON/YAML file, URI or inline JSON")
    parser.add_argument(
        "--input-format",
        default="auto",
        choices=["auto", "parquet", "jsonl", "raw"],
        help="input format (default: from the file extensions)",
    )
    parser.add_argument(
        "--partition",
        action="append",
        metavar="KEY=VALUE",
        help="the partition this run replaces, e.g. run_key=scheduled__2026-01-01T02_00_00 (repeatable)",
    )
    parser.add_argument("--txn-app-id", metavar="ID", help="Delta application transaction id (the task run)")
    parser.add_argument("--txn-version", type=int, metavar="N", help="its version (the try number)")
    parser.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS") or None,
        metavar="HOST:PORT",
        help="Ray cluster to run on (default: $RAY_ADDRESS; none: start a private local cluster)",
    )
    parser.add_argument(
        "--local-cpus", type=int, default=None, help="CPUs for the private local cluster (default: all)"
    )
    ray_driver.add_arguments(parser)
    parser.add_argument(
        "--attempt-id",
        default=None,
        help="names this driver's parts (default: timestamp + random); logs and the commit show it",
    )
    parser.add_argument(
        "--resource-wait-s",
        type=float,
        default=600.0,
        metavar="S",
        help="how long a step whose resources fit no Ray node waits for one (default 600)",
    )
    parser.add_argument(
        "--vacuum-retention-hours",
        type=int,
        default=DEFAULT_VACUUM_RETENTION_HOURS,
        metavar="H",
        help="after a commit, delete files no version of the last H hours needs: parts of killed runs, "
        "replaced parts (default 168; must exceed the longest run and the oldest version a reader pins; "
        "0: no vacuum)",
    )
    parser.add_argument(
        "--validate-only",
        action="store_true",
        help="check everything and run nothing on Ray; NOTE: the dry run calls your transforms in this process",
    )
    parser.add_argument("--no-result", action="store_true", help="do not write the XCom result file")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO; DEBUG adds tracebacks)")
    return parser


class Interrupted(BaseException):  # not an Exception: no generic handler may swallow it
    """SIGTERM (pod eviction, preemption): stop, commit nothing, exit so the operator relaunches."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(f"received signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = str(args.log_level).upper() == "DEBUG"
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return _run(args, debug)
    except Interrupted as exc:
        logger.warning(
            "interrupted (%s) before the run finished; nothing of it is visible unless its commit had landed "
            "(a relaunch with the same --txn-* then returns that commit's result)",
            exc,
        )
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _run(args: argparse.Namespace, debug: bool) -> int:
    from mlk8s.preprocessing.errors import CommitError
    from mlk8s.preprocessing.plan import make_plan
    from mlk8s.preprocessing.run import result_of

    try:
        plan = make_plan(args)
    except CommitError as exc:  # fenced before work: a newer try already committed
        return report_error(PROG, str(exc), EXIT_ERROR, debug=debug)
    except ValueError as exc:  # SpecError, InputError, OutputError, pyarrow's ArrowInvalid
        return report_error(PROG, f"{exc} (nothing was run; the output is as it was)", EXIT_USAGE, debug=debug)
    if plan.earlier is not None:
        result = result_of(plan.earlier, plan.table)
        logger.info(
            "already committed: %s version %s is delta version %d of %s; returning its result without rerunning",
            plan.txn.app_id if plan.txn else "",
            plan.txn.version if plan.txn else "",
            plan.earlier.version,
            plan.table.uri,
        )
        return _finish(args, result, plan.table, vacuum=False)
    if args.validate_only:
        return EXIT_OK
    try:
        result = _run_on_ray(args, plan)
    except Interrupted:
        landed = _landed(plan)
        if landed is None:
            raise
        logger.warning("interrupted just after the commit landed (delta version %d): its result", landed.version)
        return _finish(args, result_of(landed, plan.table), plan.table, vacuum=False)
    except Exception as exc:
        return _failed(exc, debug)
    return _finish(args, result, plan.table, vacuum=args.vacuum_retention_hours > 0)


def _landed(plan: Any) -> Any:
    """After a SIGTERM: this run's commit, if it landed before the signal (only a transaction can tell)."""
    from mlk8s.preprocessing.commit import earlier_commit

    signal.signal(signal.SIGTERM, _deferred)
    if plan.txn is None:
        return None
    try:
        return earlier_commit(plan.table, plan.txn)
    except Exception:  # fenced or unreadable: not this run's commit to report
        return None


def _run_on_ray(args: argparse.Namespace, plan: Any) -> dict[str, Any]:
    import ray

    from mlk8s.preprocessing.errors import ResourceWaitError
    from mlk8s.preprocessing.run import run_pipeline

    try:
        with contextlib.ExitStack() as stack:
            # ray.init installs its own SIGTERM handler (sys.exit(15)); ours turns an eviction into exit 75. A
            # SIGTERM that lands while ray.init runs reaches Ray's handler (blocking the signal cannot help: Ray
            # and deltalake threads already run), so its SystemExit(15) is the same eviction.
            try:
                stack.enter_context(
                    ray_driver.connect(
                        args.ray_address,
                        args.local_cpus,
                        connect_timeout_s=args.ray_connect_timeout_s,
                        head_lost_timeout_s=args.ray_head_lost_timeout_s,
                    )
                )
            except SystemExit as exc:
                if exc.code != signal.SIGTERM:
                    raise
                raise Interrupted(f"received signal {exc.code} while connecting to Ray") from None
            finally:
                signal.signal(signal.SIGTERM, _raise_interrupted)
            result = run_pipeline(
                plan.spec,
                plan.source,
                plan.table,
                txn=plan.txn,
                attempt_id=args.attempt_id,
                resource_wait_s=args.resource_wait_s,
            )
            # Committed: a SIGTERM from here on must not turn a finished run into a relaunch.
            signal.signal(signal.SIGTERM, _deferred)
            return result
    except ResourceWaitError as exc:
        raise RuntimeError(str(exc)) from None
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _deferred(signum: int, frame: object) -> None:
    logger.warning("received signal %d after the commit; finishing (the result is being written)", signum)


def _finish(args: argparse.Namespace, result: dict[str, Any], table: Any, *, vacuum: bool) -> int:
    signal.signal(signal.SIGTERM, _deferred)
    logger.info("result: %s", result)
    if not args.no_result:
        write_result(result)
    if vacuum:
        from mlk8s.preprocessing.commit import vacuum as vacuum_table

        try:
            vacuum_table(table, args.vacuum_retention_hours)
        except Exception as exc:  # the commit stands; a failed clean-up is retried by the next run's vacuum
            logger.warning("vacuum of %s failed (the commit stands): %s", table.uri, exc)
    return EXIT_OK


def _failed(exc: BaseException, debug: bool) -> int:
    """A failure after Ray started: bad input found by a worker exits 2, anything else 1; one line each."""
    import traceback

    from mlk8s.preprocessing.errors import CommitError, InputError, OutputError, SpecError

    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    usage = root_cause(exc, (InputError, OutputError, SpecError))
    if usage is not None:
        # Its own line only: Ray appends its retry advice on the lines after it, which is no fix for bad input.
        return report_error(PROG, f"{_first_line(usage)} (nothing was committed; the output is as it was)", EXIT_USAGE)
    cause = root_cause(exc, (CommitError,)) or innermost(exc)
    message = _first_line(cause)
    if not isinstance(cause, CommitError):
        message = (
            f"preprocessing failed ({type(cause).__name__}: {message}); nothing was committed, the table is as it was"
        )
    logger.error("%s", message)
    return report_error(PROG, message, EXIT_ERROR)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: ``__cause__``/``__context__`` chains and Ray's ``RayTaskError.cause``."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nested in (getattr(current, "cause", None), current.__cause__, current.__context__):
            if isinstance(nested, BaseException):
                todo.append(nested)
    return seen


def root_cause(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The deepest exception of ``kinds`` that ``exc`` wraps (a Ray task error's original input error)."""
    found = [e for e in _causes(exc) if isinstance(e, kinds)]
    return found[-1] if found else None


def innermost(exc: BaseException) -> BaseException:
    return _causes(exc)[-1]
