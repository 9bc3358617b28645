"""The callables Ray runs: composed maps and filters (:class:`TaskStage`), an actor step (:class:`ActorStage`)
and the part writer at the end, plus the row bookkeeping that lets them count filtered rows.

Consecutive maps and filters are composed into one function (one call per planned task reads its work units,
transforms and writes, so blocks never travel through the object store); actor steps (the embedding model) are
fused in too, constructed once per worker, unless they need a pool of their own (GPUs, a fixed ``concurrency``:
:class:`ActorStage`, see :mod:`.dataset_plan`). Only a one-row description of each written file
comes back to the driver.

Counting filtered rows across retries: every stage's output carries two bookkeeping columns, the number
of input rows the batch came from (on its first row) and a "ghost" flag for a placeholder row that keeps a
fully filtered batch's count alive. Counts then survive Ray's retries and re-batching exactly, with no
side channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlk8s.preprocessing.parts import PartWriter
from mlk8s.preprocessing.readers import read_unit
from mlk8s.preprocessing.sources import InputSource
from mlk8s.preprocessing.spec import PipelineSpec, Step

IN_ROWS = "__mlk8s_in_rows"
GHOST = "__mlk8s_ghost"


def apply_step(step: Step, table: pa.Table, instance: Any = None) -> pa.Table:
    if step.kind == "actor":
        out = instance(table)
    elif step.kind == "filter":
        mask = step.fn(table, **step.args)
        if isinstance(mask, pa.ChunkedArray):
            mask = mask.combine_chunks() if mask.num_chunks != 1 else mask.chunk(0)
        if not isinstance(mask, pa.Array) or mask.type != pa.bool_() or len(mask) != table.num_rows:
            raise TypeError(
                f"{step.where}: a filter must return a boolean Arrow array with one value per row; got "
                f"{type(mask).__name__} {getattr(mask, 'type', '')} of length {len(mask)} for {table.num_rows} rows"
            )
        return table.filter(pc.fill_null(mask, False))
    else:
        out = step.fn(table, **step.args)
    if isinstance(out, pa.RecordBatch):
        out = pa.Table.from_batches([out])
    if not isinstance(out, pa.Table):
        raise TypeError(f"{step.where}: a map must return a pyarrow.Table, got {type(out).__name__}")
    return out


def _unwrap(table: pa.Table) -> tuple[pa.Table, int]:
    if IN_ROWS not in table.column_names:
        return table, table.num_rows
    in_rows = int(pc.sum(table[IN_ROWS]).as_py() or 0)
    real = table.filter(pc.invert(table[GHOST])).drop_columns([IN_ROWS, GHOST])
    return real, in_rows


def _wrap(table: pa.Table, in_rows: int) -> pa.Table:
    if table.num_rows == 0:
        ghost = pa.Table.from_arrays([pa.nulls(1, f.type) for f in table.schema], schema=_nullable(table.schema))
        return ghost.append_column(IN_ROWS, pa.array([in_rows], pa.int64())).append_column(GHOST, pa.array([True]))
    counts = pa.array([in_rows] + [0] * (table.num_rows - 1), pa.int64())
    return table.append_column(IN_ROWS, counts).append_column(GHOST, pa.array([False] * table.num_rows))


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


@dataclass
class Stage:
    kind: str  # "task" or "actor"
    steps: list[Step] = field(default_factory=list)


def plan_stages(spec: PipelineSpec) -> list[Stage]:
    stages: list[Stage] = []
    for step in spec.steps:
        if step.kind == "actor":
            stages.append(Stage("actor", [step]))
        elif stages and stages[-1].kind == "task":
            stages[-1].steps.append(step)
        else:
            stages.append(Stage("task", [step]))
    return stages


class TaskStage:
    """Maps and filters (and, fused, actor steps: each constructed once per worker) composed into one
    function; optionally the raw-file decoding before and the write after, so one call does all of it for a
    block."""

    def __init__(
        self,
        steps: list[Step],
        *,
        source: InputSource | None = None,
        writer: PartWriter | None = None,
    ) -> None:
        self.steps = steps
        self.source = source
        self.writer = writer
        self.instances = {step.index: step.fn(**step.args) for step in steps if step.kind == "actor"}

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.source is not None:
            # The first stage reads its work units itself (see work_units.plan_tasks): the steps run unit by
            # unit, so a task's peak memory is one unit's intermediates, and the results go out together.
            units = [unit for text in batch.column("units").to_pylist() for unit in json.loads(text)]
            tables, in_rows = [], 0
            for unit in units:
                table = read_unit(self.source, unit)
                if table.num_rows:  # a byte range of a JSON lines file can hold no line of its own
                    in_rows += table.num_rows
                    table = self._steps(table)
                    # Cast unit by unit, so a value that does not fit the table's schema names its file.
                    tables.append(table if self.writer is None else self.writer.finish(table, unit["paths"]))
            if not tables:
                return self._nothing(in_rows)
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        else:
            table, in_rows = _unwrap(batch)
            table = self._steps(table)
        if self.writer is not None:
            return self.writer.write(table, in_rows)
        return _wrap(table, in_rows)

    def _nothing(self, in_rows: int) -> pa.Table:
        if self.writer is not None:
            return self.writer.empty(in_rows)
        return pa.table({IN_ROWS: pa.array([in_rows], pa.int64()), GHOST: pa.array([True])})

    def _steps(self, table: pa.Table) -> pa.Table:
        for step in self.steps:
            if step.kind == "actor" and table.num_rows == 0:
                continue
            table = apply_step(step, table, self.instances.get(step.index))
        return table


class ActorStage:
    """One actor transform (e.g. the embedding model), constructed once per Ray actor."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.instance = step.fn(**step.args)

    def __call__(self, batch: pa.Table) -> pa.Table:
        table, in_rows = _unwrap(batch)
        if table.num_rows:
            table = apply_step(self.step, table, self.instance)
        return _wrap(table, in_rows)
