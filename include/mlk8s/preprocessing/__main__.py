"""``python -m mlk8s.preprocessing``: the driver pod's entrypoint.

Everything that can be checked is checked before the Ray job starts (spec, transforms, input, output,
declared schema on a sample); a usage error exits with code 2 and leaves any previous output untouched.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import textwrap
from typing import Any

from mlk8s import ray_driver
from mlk8s.pod_contract import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, write_result

logger = logging.getLogger("mlk8s.preprocessing")

EPILOG = textwrap.dedent(
    """\
    Input (--input): a file or directory, local or a pyarrow.fs URI (file://, s3://, gs://, hdfs://...).
      Parquet (.parquet), JSON lines (.jsonl, .ndjson, .json, .jsonl.gz) or raw text/HTML files
      (.txt, .md, .html, .htm; each file becomes one document with id = its path under --input). Names
      starting with '_' or '.' are ignored. A directory holding a committed preprocessing output
      (_manifest.json) is read through its manifest.

    Pipeline (--pipeline): a JSON or YAML file, a URI, or inline JSON. Without it, the default document
      pipeline runs: html_to_text, clean_text, text_features, non_empty_text (filter), embed
      (all-MiniLM-L6-v2, 384-dim list<float32> 'embedding'). Other columns (id, label, ...) pass through.
      Spec keys: steps: [{use, kind, args, batch_size, concurrency, num_cpus, num_gpus}],
      schema: {fields: {name: type}, extra: drop|keep}, batch_size.
      Built-in maps: html_to_text, clean_text, text_features, to_schema; filters: non_empty_text,
      min_words; actor: embed. Your own: use: a dotted path to fn(table: pyarrow.Table, **args) returning
      a Table (kind: map, the default) or a boolean mask (kind: filter), or a class (kind: actor).
      Your module must be importable on the driver and on the Ray workers.

    Output (--output): a directory URI. Parts are staged under _attempts/<attempt>/ and committed by
      _manifest.json, written last; a rerun replaces the output, a failed run leaves the previous one.
      Read it with mlk8s.preprocessing.read_output(URI).

    Ray: RAY_ADDRESS (or --ray-address) names the cluster, e.g. the KubeRay head service; token auth via
      RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH. The driver joins the pool as a zero-resource Ray node unless a
      raylet of it runs on this host. Without an address a private local cluster is started (never an
      existing one attached to by accident).

    Result: JSON written to $MLK8S_XCOM_DIR/return.json (default /airflow/xcom/return.json) with
      input_rows, output_rows, filtered_rows, output_bytes, files, duration_s, rows_per_s, output_uri,
      manifest_uri, content_hash, attempt_id.
    Exit codes: 0 done, 1 failed while running (previous output intact), 2 bad arguments/spec/input,
      75 interrupted by SIGTERM before committing (relaunch; the previous output is intact).
    """
)


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: give a finite number of seconds > 0")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlk8s.preprocessing",
        description="Ray Data preprocessing: documents in, cleaned text, features and embeddings out, "
        "committed exactly once.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, metavar="URI", help="input file or directory (path or URI)")
    parser.add_argument("--output", required=True, metavar="URI", help="output directory (path or URI)")
    parser.add_argument("--pipeline", metavar="SPEC", help="pipeline spec: JSON/YAML file, URI or inline JSON")
    parser.add_argument(
        "--input-format",
        default="auto",
        choices=["auto", "parquet", "jsonl", "raw"],
        help="input format (default: from the file extensions)",
    )
    parser.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS") or None,
        metavar="HOST:PORT",
        help="Ray cluster to run on (default: $RAY_ADDRESS; none: start a private local cluster)",
    )
    parser.add_argument(
        "--local-cpus", type=int, default=None, help="CPUs for the private local cluster (default: all)"
    )
    parser.add_argument(
        "--ray-connect-timeout-s",
        type=positive_seconds,
        default=os.environ.get(ray_driver.CONNECT_TIMEOUT_ENV, str(ray_driver.DEFAULT_CONNECT_TIMEOUT_S)),
        metavar="S",
        help=f"how long to wait for the Ray pool to answer (default: ${ray_driver.CONNECT_TIMEOUT_ENV} or "
        f"{ray_driver.DEFAULT_CONNECT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--ray-head-lost-timeout-s",
        type=positive_seconds,
        default=os.environ.get(ray_driver.HEAD_LOST_TIMEOUT_ENV, str(ray_driver.DEFAULT_HEAD_LOST_TIMEOUT_S)),
        metavar="S",
        help="how long a run waits for a Ray head that went away before it fails (default: "
        f"${ray_driver.HEAD_LOST_TIMEOUT_ENV} or {ray_driver.DEFAULT_HEAD_LOST_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--attempt-id",
        default=None,
        help="name of this attempt's staging directory (default: timestamp + random); logs and manifest show it",
    )
    parser.add_argument("--validate-only", action="store_true", help="check everything, run nothing")
    parser.add_argument("--no-result", action="store_true", help="do not write the XCom result file")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def validate(args: argparse.Namespace) -> tuple[Any, Any]:
    """Spec, input, output and schema checks; raises SpecError/InputError/ValueError before any work."""
    from mlk8s.preprocessing.pipeline import dry_run
    from mlk8s.preprocessing.sources import open_input, resolve_filesystem
    from mlk8s.preprocessing.spec import load_spec

    spec = load_spec(args.pipeline)
    source = open_input(args.input, args.input_format)
    out_fs, out_root = resolve_filesystem(args.output, "--output")
    _, in_path = resolve_filesystem(args.input)
    out_dir, in_dir = out_root.rstrip("/") + "/", in_path.rstrip("/") + "/"
    if type(out_fs) is type(source.filesystem) and (out_dir.startswith(in_dir) or in_dir.startswith(out_dir)):
        raise ValueError(
            f"--output: {args.output!r} and --input {args.input!r} overlap; write to a directory outside the input"
        )
    if args.attempt_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", args.attempt_id):
        raise ValueError(
            f"--attempt-id: {args.attempt_id!r} must be 1-128 letters, digits, '.', '_' or '-' (it names a directory)"
        )
    if args.ray_address == "auto":
        raise ValueError("--ray-address/RAY_ADDRESS: 'auto' attaches to whatever cluster runs here; name one")
    schema = dry_run(spec, source)
    logger.info(
        "validated: pipeline=%s steps=%d input=%s output_schema=%s",
        spec.source,
        len(spec.steps),
        source.describe(),
        schema,
    )
    return spec, source


class Interrupted(BaseException):  # not an Exception: no generic handler may swallow it
    """SIGTERM (pod eviction, preemption): stop, commit nothing, exit so the operator relaunches."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(f"received signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return _run(args)
    except Interrupted as exc:
        logger.warning("interrupted (%s) before the commit finished; the previous output is intact", exc)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _run(args: argparse.Namespace) -> int:
    from mlk8s.preprocessing.commit import CommitError
    from mlk8s.preprocessing.sources import InputError
    from mlk8s.preprocessing.spec import SpecError

    try:
        spec, source = validate(args)
    except (SpecError, InputError, ValueError) as exc:
        logger.error("usage error (nothing was run, existing output untouched): %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.validate_only:
        return EXIT_OK
    import ray

    from mlk8s.preprocessing.pipeline import run_pipeline

    connection = ray_driver.connect(
        args.ray_address,
        args.local_cpus,
        connect_timeout_s=args.ray_connect_timeout_s,
        head_lost_timeout_s=args.ray_head_lost_timeout_s,
    )
    try:
        with connection:
            # ray.init installs its own SIGTERM handler (log and exit 15); ours turns an eviction into exit 75.
            signal.signal(signal.SIGTERM, _raise_interrupted)
            result = run_pipeline(spec, source, args.output, attempt_id=args.attempt_id)
    except ray_driver.RayPoolUnreachable as exc:
        logger.error("%s; nothing was run, the previous output (if any) is intact", exc)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (CommitError, Exception) as exc:
        logger.exception("preprocessing failed; the previous output (if any) is intact: %s", exc)
        return EXIT_ERROR
    finally:
        if ray.is_initialized():
            ray.shutdown()
    logger.info("result: %s", result)
    if not args.no_result:
        write_result(result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
