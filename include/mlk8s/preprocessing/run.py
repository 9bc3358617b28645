"""The driver's run loop: build the dataset, collect the parts' descriptions as they arrive (with progress in
the log), commit them once, and return the run's result (the XCom; the commit's info holds the same summary).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlk8s.preprocessing.commit import AppTransaction, Commit, commit_parts
from mlk8s.preprocessing.dataset_plan import build_dataset
from mlk8s.preprocessing.parts import Part, PartWriter, content_hash, new_attempt_id
from mlk8s.preprocessing.resource_wait import ResourceWatch
from mlk8s.preprocessing.sources import InputSource
from mlk8s.preprocessing.spec import PipelineSpec
from mlk8s.preprocessing.table import DELTA_LOG, OutputTable, Partition, open_table

logger = logging.getLogger(__name__)

#: How long a step whose resources fit no Ray node may wait for one (``--resource-wait-s``).
DEFAULT_RESOURCE_WAIT_S = 600.0


@dataclass
class Progress:
    files: int = 0
    input_rows: int = 0
    output_rows: int = 0
    output_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def log(self, final: bool = False) -> None:
        rate = self.input_rows / self.elapsed_s if self.elapsed_s > 0 else 0.0
        logger.info(
            "%s: input_rows=%d output_rows=%d filtered_rows=%d output_bytes=%d files=%d rows_per_s=%.0f elapsed_s=%.1f",
            "done" if final else "progress",
            self.input_rows,
            self.output_rows,
            self.input_rows - self.output_rows,
            self.output_bytes,
            self.files,
            rate,
            self.elapsed_s,
        )


def result_of(commit: Commit, table: OutputTable) -> dict[str, Any]:
    """The task's result from a commit: the summary the run wrote into it, plus where the commit is. A relaunch
    that finds its transaction committed returns exactly this, rebuilt from the table's log."""
    log_entry = table.location.child(f"{DELTA_LOG}/{commit.version:020d}.json").uri
    return {**commit.summary, "delta_version": commit.version, "manifest_uri": log_entry}


def run_pipeline(
    spec: PipelineSpec,
    source: InputSource,
    output: OutputTable | str,
    *,
    partition: Partition | None = None,
    txn: AppTransaction | None = None,
    attempt_id: str | None = None,
    progress_every_s: float = 5.0,
    resource_wait_s: float = DEFAULT_RESOURCE_WAIT_S,
    on_part: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Run on the Ray cluster this process is connected to, commit once, and return the result.

    ``output`` is a checked table (:func:`mlk8s.preprocessing.table.open_table`, as the CLI passes it) or a
    URI, checked here against the schema a dry run of ``spec`` gives.
    """
    # Ray Data's usage report queries a Prometheus that pods do not have, and logs a traceback per query.
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Ray Data wraps a failing UDF's exception in UserCodeException "from" it, and the "from" does not survive
    # the trip back to the driver: a worker's InputError (bad JSON in a later file) would reach the CLI as an
    # unnamed failure, exit 1. Raised as is, it stays an InputError: exit 2 naming the file and line.
    context.raise_original_map_exception = True
    if isinstance(output, str):
        from mlk8s.preprocessing.dry_run import dry_run

        output = open_table(output, partition or Partition(), dry_run(spec, source), evolve=spec.schema_evolve)
    attempt_id = attempt_id or new_attempt_id()
    logger.info(
        "start: input=%s output=%s partition=%s attempt=%s steps=%s",
        source.describe(),
        output.uri,
        output.partition.directory or "(whole table)",
        attempt_id,
        [s.use for s in spec.steps],
    )
    writer = PartWriter(output.uri, output.partition.directory, attempt_id, output.schema)
    progress = Progress()
    with ResourceWatch(spec, resource_wait_s):
        parts, unwritten_input_rows = _collect(build_dataset(spec, source, writer), progress, progress_every_s, on_part)
    progress.log(final=True)
    summary = {
        "input_rows": progress.input_rows,
        "output_rows": progress.output_rows,
        "filtered_rows": progress.input_rows - progress.output_rows,
        "output_bytes": progress.output_bytes,
        "files": len(parts),
        "duration_s": round(progress.elapsed_s, 3),
        "rows_per_s": round(progress.input_rows / progress.elapsed_s, 1) if progress.elapsed_s > 0 else None,
        "output_uri": output.uri,
        "table_uri": output.location.uri,
        "partition": output.partition.as_dict(),
        "content_hash": content_hash(parts),
        "attempt_id": attempt_id,
        "input_uri": source.uri,
        "pipeline": spec.source,
        "pipeline_digest": spec.digest(),
        "unwritten_input_rows": unwritten_input_rows,
        "txn": None if txn is None else txn.as_dict(),
    }
    started = time.monotonic()
    commit = commit_parts(output, parts, txn=txn, summary=summary)
    return {**result_of(commit, output), "commit_s": round(time.monotonic() - started, 3)}


def _collect(
    ds: Any, progress: Progress, progress_every_s: float, on_part: Callable[[Progress], None] | None
) -> tuple[list[Part], int]:
    """The parts the tasks report as they finish, and the input rows of tasks that wrote none."""
    parts: list[Part] = []
    unwritten_input_rows = 0
    last_log = time.monotonic()
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            progress.input_rows += int(row["input_rows"])
            if row["path"]:
                parts.append(Part(**row))
                progress.files += 1
                progress.output_rows += int(row["rows"])
                progress.output_bytes += int(row["bytes"])
            else:
                unwritten_input_rows += int(row["input_rows"])
        if on_part is not None:
            on_part(progress)
        if time.monotonic() - last_log >= progress_every_s:
            progress.log()
            last_log = time.monotonic()
    return parts, unwritten_input_rows
