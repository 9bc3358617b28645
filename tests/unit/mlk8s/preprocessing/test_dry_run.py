"""The dry run before work: the output schema from a sample, and a step that fails on the real columns named."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from mlk8s.preprocessing.dry_run import dry_run
from mlk8s.preprocessing.errors import SpecError
from mlk8s.preprocessing.samples import write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import load_spec, parse_spec


def test_the_default_pipeline_gives_its_schema_without_loading_the_model(tmp_path: Path) -> None:
    schema = dry_run(load_spec(None), open_input(str(write_documents(tmp_path / "d.jsonl", rows=20))))
    assert schema.field("embedding").type == pa.list_(pa.float32()) and "html" not in schema.names


def test_failures_name_the_step_and_the_columns(tmp_path: Path) -> None:
    source = open_input(str(write_documents(tmp_path / "d.jsonl", rows=20)))
    with pytest.raises(SpecError, match=r"steps\[0\] \(text_features\) fails on the first 20 input rows.*'body'"):
        dry_run(parse_spec({"steps": [{"use": "text_features", "args": {"column": "body"}}]}), source)
    with pytest.raises(SpecError, match="does not convert to the declared schema"):
        dry_run(parse_spec({"steps": ["clean_text"], "schema": {"fields": {"topic": "int64"}}}), source)


def test_a_user_actor_runs_so_its_columns_are_in_the_schema(tmp_path: Path) -> None:
    """Left out, the writer's cast to this schema would drop the actor's columns from the output."""
    source = open_input(str(write_documents(tmp_path / "d.jsonl", rows=20)))
    user = "tests.unit.mlk8s.preprocessing.user_transforms"
    spec = parse_spec({"steps": ["clean_text", {"use": f"{user}.Tagger", "args": {"tag": "x"}, "concurrency": 1}]})
    assert spec.steps[-1].kind == "actor"
    assert dry_run(spec, source).field("tag").type == pa.string()
