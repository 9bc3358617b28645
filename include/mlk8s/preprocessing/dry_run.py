"""Validation before any work: every step run on the first input rows, in the driver's own process.

Catches a transform that fails on the real columns, a filter that returns the wrong thing, and a declared
schema the data does not convert to, before the Ray job starts. It calls the user's own transforms, so any
side effect they have happens here too.
"""

from __future__ import annotations

import pyarrow as pa

from mlk8s.preprocessing.errors import SpecError
from mlk8s.preprocessing.readers import read_sample
from mlk8s.preprocessing.schema import cast_to_schema
from mlk8s.preprocessing.sources import InputSource
from mlk8s.preprocessing.spec import PipelineSpec, Step
from mlk8s.preprocessing.stages import apply_step


def dry_run(spec: PipelineSpec, source: InputSource, rows: int = 64) -> pa.Schema:
    """Run every step on the first rows of the input, in this process, and return the output schema.

    Catches a transform that fails on the real columns, a filter that returns the wrong thing, and a
    declared schema the data does not convert to, before the Ray job starts. Actor steps run here too (each
    constructed once), but for the built-in embedder (loading a model in the driver is slow): its column is
    simulated.
    """
    sample = read_sample(source, rows)
    table = sample
    for step in spec.steps:
        try:
            if step.kind == "actor":
                table = _simulate_actor(step, table)
            else:
                table = apply_step(step, table)
        except SpecError:
            raise
        except Exception as exc:
            raise SpecError(
                f"{step.where} fails on the first {sample.num_rows} input rows: {type(exc).__name__}: {exc}. "
                f"Input columns: {sample.schema.names}"
            ) from None
    if spec.schema is not None:
        try:
            table = cast_to_schema(table, spec.schema, extra=spec.schema_extra)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
            produced = {f.name: str(f.type) for f in table.schema}
            raise SpecError(
                f"schema: the pipeline's output does not convert to the declared schema ({exc}). The pipeline "
                f"produces {produced}; fix the declared types or add a transform that converts the values"
            ) from None
    return table.schema


def _simulate_actor(step: Step, table: pa.Table) -> pa.Table:
    from mlk8s.preprocessing.embedding import Embedder

    if step.fn is Embedder:
        column = step.args.get("column", "text")
        if column not in table.column_names:
            raise SpecError(f"{step.where}: column {column!r} is not produced by the steps before it")
        output = step.args.get("output", "embedding")
        return table.append_column(output, pa.nulls(table.num_rows, pa.list_(pa.float32())))
    # A user's actor class is constructed and run here like a map: the columns it adds are part of the
    # table's schema (left out, the writer's cast to that schema would drop them).
    return apply_step(step, table, step.fn(**step.args))
