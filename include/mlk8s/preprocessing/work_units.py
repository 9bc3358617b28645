"""The input cut into work units (a Parquet row group, a byte range of a JSON lines file, a chunk of raw files)
and grouped into Ray tasks of about equal size: the first stage's dataset (:func:`ray_dataset`).
"""

from __future__ import annotations

from typing import Any

from mlk8s.preprocessing.sources import InputSource

#: Raw files per work unit: small files, so a unit of one file would be all task overhead.
RAW_FILES_PER_UNIT = 256
#: Above this many Parquet row groups, a unit is a whole file (listing row groups costs a footer read each).
MAX_ROW_GROUP_UNITS = 20000
#: Uncompressed JSON lines files are cut into byte ranges of about this size (a range holds the lines that
#: start inside it), so one large file is read by many tasks and never whole by one.
JSONL_UNIT_BYTES = 256 * 1024
#: Tasks per CPU the input is cut into, at least: enough that the last round of tasks is short (a CPU that
#: finishes early idles for at most one small task) and a pool that grows mid-run gets work.
TASKS_PER_CPU = 8
#: A task reads at most about this much (uncompressed), however large the input: it bounds a task's memory
#: and the work a retry repeats.
MAX_TASK_BYTES = 128 * 1024 * 1024


def work_units(source: InputSource) -> list[dict[str, Any]]:
    """The input cut into its smallest independent pieces: a Parquet row group, a JSON lines file, or a
    chunk of raw files, each with an estimate of its uncompressed size (``bytes``).

    Ray Data's own file readers group files into as many read tasks as there are CPUs, by count, so one
    task can get most of the rows while the other CPUs idle; :func:`plan_tasks` groups these pieces into
    tasks of about equal size instead.
    """
    import pyarrow.parquet as pq

    if source.format == "raw":
        files = list(source.files)
        sizes = _file_sizes(source)
        return [
            {
                "paths": files[i : i + RAW_FILES_PER_UNIT],
                "row_group": -1,
                "bytes": sum(sizes.get(f, 0) for f in files[i : i + RAW_FILES_PER_UNIT]),
            }
            for i in range(0, len(files), RAW_FILES_PER_UNIT)
        ]
    if source.format == "jsonl":
        sizes = _file_sizes(source)
        ranges: list[dict[str, Any]] = []
        for path in source.files:
            size = sizes.get(path, 0)
            if path.endswith(".gz") or size <= JSONL_UNIT_BYTES:  # gzip cannot be read from an offset
                ranges.append({"paths": [path], "row_group": -1, "bytes": size})
                continue
            for start in range(0, size, JSONL_UNIT_BYTES):
                end = min(start + JSONL_UNIT_BYTES, size)
                ranges.append(
                    {"paths": [path], "row_group": -1, "range": [start, end], "file_bytes": size, "bytes": end - start}
                )
        return ranges
    if len(source.files) > MAX_ROW_GROUP_UNITS:
        sizes = _file_sizes(source)
        return [{"paths": [path], "row_group": -1, "bytes": sizes.get(path, 0)} for path in source.files]
    units: list[dict[str, Any]] = []
    for path in source.files:
        with source.filesystem.open_input_file(path) as fh:
            metadata = pq.ParquetFile(fh).metadata
        units.extend(
            {"paths": [path], "row_group": g, "bytes": metadata.row_group(g).total_byte_size}
            for g in range(metadata.num_row_groups)
        )
    return units


def _file_sizes(source: InputSource) -> dict[str, int]:
    infos = source.filesystem.get_file_info(list(source.files))
    return {info.path: max(info.size or 0, 0) for info in infos}


def plan_tasks(
    units: list[dict[str, Any]],
    cpus: float,
    *,
    tasks_per_cpu: int = TASKS_PER_CPU,
    max_task_bytes: int = MAX_TASK_BYTES,
) -> list[list[dict[str, Any]]]:
    """Consecutive work units grouped into Ray tasks of about equal size.

    Fewer, larger tasks mean fewer output parts and less per-task bookkeeping; at least ``tasks_per_cpu``
    tasks per CPU keep the end of the run balanced, and no task reads more than ``max_task_bytes``. A unit
    larger than the target is a task of its own (units are never split).
    """
    if not units:
        return []
    sizes = [max(int(u.get("bytes", 0)), 0) for u in units]
    if not any(sizes):
        sizes = [1] * len(units)  # sizes unknown: group by count
    total = sum(sizes)
    wanted = max(1, int(max(cpus, 1) * tasks_per_cpu))
    target = min(max_task_bytes, max(1, -(-total // wanted)))
    tasks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for unit, unit_bytes in zip(units, sizes, strict=True):
        # Close the task when this unit would take it past the target by more than half the unit, so
        # tasks land on whichever side of the target is nearer.
        if current and size + unit_bytes / 2 > target:
            tasks.append(current)
            current, size = [], 0
        current.append(unit)
        size += unit_bytes
    tasks.append(current)
    return tasks


def ray_dataset(source: InputSource, cpus: float) -> Any:
    """A Ray Dataset of tasks (one block each, one row per work unit, see :func:`plan_tasks`); the first
    stage reads the units with :func:`read_unit`."""
    import json

    import ray.data

    tasks = plan_tasks(work_units(source), cpus)
    items = [{"units": json.dumps(task)} for task in tasks]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items)))
