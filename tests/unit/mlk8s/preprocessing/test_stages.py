"""The callables Ray runs, called here directly: a task reads its units, runs the steps and writes one part;
filtered rows are counted through the bookkeeping columns even when a whole batch is filtered out."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from mlk8s.preprocessing.parts import PartWriter
from mlk8s.preprocessing.samples import write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import parse_spec
from mlk8s.preprocessing.stages import ActorStage, TaskStage, apply_step, plan_stages
from mlk8s.preprocessing.work_units import work_units

USER = "tests.unit.mlk8s.preprocessing.user_transforms"


def test_maps_and_filters_fuse_and_each_actor_gets_its_own_stage() -> None:
    spec = parse_spec({"steps": ["clean_text", "non_empty_text", f"{USER}.Tagger", "text_features"]})
    assert [(s.kind, [x.use for x in s.steps]) for s in plan_stages(spec)] == [
        ("task", ["clean_text", "non_empty_text"]),
        ("actor", [f"{USER}.Tagger"]),
        ("task", ["text_features"]),
    ]


def test_a_task_reads_its_units_and_writes_one_part(tmp_path: Path) -> None:
    source = open_input(str(write_documents(tmp_path / "docs.jsonl", rows=60)))
    spec = parse_spec({"steps": ["html_to_text", "clean_text", "non_empty_text"]})
    writer = PartWriter(
        str(tmp_path / "out"), "run_key=r", "a1", pa.schema([("id", pa.string()), ("text", pa.string())])
    )
    stage = TaskStage(list(spec.steps), source=source, writer=writer)
    described = stage(pa.table({"units": [json.dumps(work_units(source))]})).to_pylist()
    assert len(described) == 1 and described[0]["input_rows"] == 60 and 0 < described[0]["rows"] < 60


def test_a_fully_filtered_batch_still_counts_its_input_rows() -> None:
    spec = parse_spec({"steps": ["non_empty_text", f"{USER}.Tagger"]})
    first = TaskStage([spec.steps[0]])
    wrapped = first(pa.table({"text": ["", " "]}))
    out = ActorStage(spec.steps[1])(wrapped)
    assert out["__mlk8s_in_rows"].to_pylist() == [2] and out["__mlk8s_ghost"].to_pylist() == [True]


def test_a_filter_must_return_a_mask() -> None:
    spec = parse_spec({"steps": [{"use": f"{USER}.not_a_mask", "kind": "filter"}]})
    with pytest.raises(TypeError, match=r"steps\[0\].*a filter must return a boolean Arrow array"):
        apply_step(spec.steps[0], pa.table({"x": [1]}))
