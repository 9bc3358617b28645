"""The single-process reference: the same steps in one process with plain pyarrow, what the Ray output must
equal (order aside). Tests and benchmarks compare against it.
"""

from __future__ import annotations

import pyarrow as pa

from mlk8s.preprocessing.readers import iter_tables
from mlk8s.preprocessing.schema import cast_to_schema
from mlk8s.preprocessing.sources import InputSource
from mlk8s.preprocessing.spec import PipelineSpec
from mlk8s.preprocessing.stages import apply_step


def run_reference(spec: PipelineSpec, source: InputSource, batch_rows: int = 65536) -> pa.Table:
    """The same steps in one process with plain pyarrow: what the Ray output must equal (order aside)."""
    instances = {s.index: s.fn(**s.args) for s in spec.steps if s.kind == "actor"}
    tables = []
    for table in iter_tables(source, batch_rows):
        for step in spec.steps:
            if step.kind == "actor" and table.num_rows == 0:
                continue
            table = apply_step(step, table, instances.get(step.index))
        tables.append(table if spec.schema is None else cast_to_schema(table, spec.schema, extra=spec.schema_extra))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")
