"""The driver's run loop: build the dataset, collect the parts' descriptions as they arrive (with progress
in the log), commit them once, and return the run's summary.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlk8s.preprocessing import commit as commit_mod
from mlk8s.preprocessing.dataset_plan import build_dataset
from mlk8s.preprocessing.errors import CommitError
from mlk8s.preprocessing.output import MANIFEST, join_uri
from mlk8s.preprocessing.sources import InputSource
from mlk8s.preprocessing.spec import PipelineSpec

logger = logging.getLogger(__name__)


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


def run_pipeline(
    spec: PipelineSpec,
    source: InputSource,
    output_uri: str,
    *,
    attempt_id: str | None = None,
    progress_every_s: float = 5.0,
    on_part: Callable[[Progress], None] | None = None,
    extra_manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run on the Ray cluster this process is connected to, commit, and return the result summary."""
    # Ray Data's usage report queries a Prometheus that pods do not have, and logs a traceback per query.
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    attempt_id = attempt_id or commit_mod.new_attempt_id()
    logger.info(
        "start: input=%s output=%s attempt=%s steps=%s",
        source.describe(),
        output_uri,
        attempt_id,
        [s.use for s in spec.steps],
    )
    progress = Progress()
    parts: list[commit_mod.Part] = []
    unwritten_input_rows = 0
    last_log = time.monotonic()
    ds = build_dataset(spec, source, output_uri, attempt_id)
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            progress.input_rows += int(row["input_rows"])
            if row["path"]:
                parts.append(commit_mod.Part(**row))
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
    progress.log(final=True)
    manifest = commit_mod.commit(
        output_uri,
        attempt_id,
        parts,
        unwritten_input_rows=unwritten_input_rows,
        extra={
            "input_uri": source.uri,
            "pipeline": spec.source,
            "pipeline_digest": spec.digest(),
            "filtered_rows": progress.input_rows - progress.output_rows,
            **(extra_manifest or {}),
        },
    )
    if manifest["rows"] != progress.output_rows:
        raise CommitError("row count mismatch between the parts and the manifest")
    duration = progress.elapsed_s
    return {
        "input_rows": manifest["input_rows"],
        "output_rows": manifest["rows"],
        "filtered_rows": manifest["input_rows"] - manifest["rows"],
        "output_bytes": manifest["bytes"],
        "files": len(manifest["files"]),
        "duration_s": round(duration, 3),
        "rows_per_s": round(manifest["input_rows"] / duration, 1) if duration > 0 else None,
        "output_uri": output_uri,
        "manifest_uri": join_uri(output_uri, MANIFEST),
        "content_hash": manifest["content_hash"],
        "attempt_id": attempt_id,
    }
