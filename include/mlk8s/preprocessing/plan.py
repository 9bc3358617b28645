"""Everything checked before the Ray job starts, gathered into the run's plan.

The spec and its transforms, the input (its files, their formats and schemas), the output table (location,
partition, schema, that it can be written), the application transaction, and a dry run of every step on a
sample. A usage error raises before anything is written; a relaunch whose transaction already committed
gets that commit back instead (:attr:`Plan.earlier`), so it returns at once without touching Ray.
"""

from __future__ import annotations

import argparse
import logging
import re
import uuid
from dataclasses import dataclass

from mlk8s.preprocessing.commit import AppTransaction, Commit, earlier_commit
from mlk8s.preprocessing.errors import OutputError
from mlk8s.preprocessing.sources import InputSource, open_input, resolve_filesystem, schema_conflicts
from mlk8s.preprocessing.spec import PipelineSpec, load_spec
from mlk8s.preprocessing.table import OutputTable, Partition, existing_table, inspect_location, open_table
from mlk8s.storage import write_atomic

logger = logging.getLogger("mlk8s.preprocessing")

ATTEMPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Plan:
    spec: PipelineSpec
    source: InputSource | None  # None when the transaction already committed (nothing more is read)
    table: OutputTable
    txn: AppTransaction | None
    earlier: Commit | None = None


def check_flags(args: argparse.Namespace) -> None:
    """The flags that need no file read."""
    if args.attempt_id is not None and not ATTEMPT_ID.fullmatch(args.attempt_id):
        raise ValueError(
            f"--attempt-id: {args.attempt_id!r} must be 1-128 letters, digits, '.', '_' or '-' (it names files)"
        )
    if args.ray_address == "auto":
        raise ValueError("--ray-address/RAY_ADDRESS: 'auto' attaches to whatever cluster runs here; name one")
    if not args.resource_wait_s > 0:
        raise ValueError(f"--resource-wait-s: must be > 0 seconds, got {args.resource_wait_s}")
    if args.vacuum_retention_hours < 0:
        raise ValueError(
            f"--vacuum-retention-hours: must be >= 0 (0 turns vacuum off), got {args.vacuum_retention_hours}"
        )


def make_plan(args: argparse.Namespace) -> Plan:
    """Check everything; raises SpecError/InputError/OutputError/ValueError (usage) or FencedError."""
    from mlk8s.preprocessing.dry_run import dry_run

    spec = load_spec(args.pipeline)
    partition = Partition.parse(args.partition)
    txn = AppTransaction.parse(args.txn_app_id, args.txn_version)
    check_flags(args)
    _, exists = inspect_location(args.output)
    if txn is not None and exists:
        table = existing_table(args.output, partition)
        earlier = earlier_commit(table, txn)
        if earlier is not None:
            return Plan(spec, None, table, txn, earlier)
    source = open_input(args.input, args.input_format)
    _refuse_overlap(args.input, args.output, source)
    schema_conflicts(source, spec.schema, spec.schema_extra)
    schema = dry_run(spec, source)
    table = open_table(args.output, partition, schema, evolve=spec.schema_evolve, create=not args.validate_only)
    if not args.validate_only:
        probe_writable(table)
    logger.info(
        "validated: pipeline=%s steps=%d input=%s output=%s partition=%s output_schema=%s",
        spec.source,
        len(spec.steps),
        source.describe(),
        table.uri,
        partition.directory or "(whole table)",
        table.schema,
    )
    return Plan(spec, source, table, txn)


def _refuse_overlap(input_uri: str, output_uri: str, source: InputSource) -> None:
    out_fs, out_root = resolve_filesystem(output_uri, "--output")
    _, in_path = resolve_filesystem(input_uri)
    out_dir, in_dir = out_root.rstrip("/") + "/", in_path.rstrip("/") + "/"
    if type(out_fs) is type(source.filesystem) and (out_dir.startswith(in_dir) or in_dir.startswith(out_dir)):
        raise ValueError(
            f"--output: {output_uri!r} and --input {input_uri!r} overlap; write to a directory outside the input"
        )


def probe_writable(table: OutputTable) -> None:
    """Write and delete a small file where the parts will go, so an unwritable output is a usage error now
    rather than a failed Ray task later. Names starting with ``_`` are invisible to Delta and to vacuum."""
    directory = table.location.child(table.partition.directory) if table.partition.directory else table.location
    probe = directory.child(f"_mlk8s-write-check-{uuid.uuid4().hex}")
    try:
        directory.fs.create_dir(directory.path, recursive=True)
        write_atomic(probe, b"")
        directory.fs.delete_file(probe.path)
    except OSError as exc:
        raise OutputError(f"--output: cannot write under {directory.uri!r} ({exc})") from None
