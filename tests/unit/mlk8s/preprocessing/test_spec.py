"""Pipeline specs: what loads, and a clear error naming the field for everything that does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlk8s.preprocessing.errors import SpecError
from mlk8s.preprocessing.spec import DEFAULT_SPEC, load_spec, parse_spec
from mlk8s.preprocessing.transforms import Embedder, non_empty_text

USER = "tests.unit.mlk8s.preprocessing.user_transforms"


def test_default_spec_is_the_document_pipeline() -> None:
    spec = load_spec(None)
    assert [s.use for s in spec.steps] == [s["use"] for s in DEFAULT_SPEC["steps"]]
    assert [s.kind for s in spec.steps] == ["map", "map", "map", "filter", "actor"]
    assert spec.steps[3].fn is non_empty_text and spec.steps[4].fn is Embedder
    assert spec.schema is None


def test_yaml_json_and_inline_specs_load_the_same(tmp_path: Path) -> None:
    raw = {
        "steps": ["clean_text", {"use": f"{USER}.keep_labels", "kind": "filter", "args": {"labels": [1]}}],
        "schema": {"fields": {"id": "string", "label": "int64 not null"}, "extra": "keep"},
        "batch_size": 1000,
    }
    (tmp_path / "p.json").write_text(json.dumps(raw))
    yaml_text = (
        "steps:\n  - clean_text\n  - use: " + USER + ".keep_labels\n    kind: filter\n    args: {labels: [1]}\n"
        "schema:\n  fields: {id: string, label: int64 not null}\n  extra: keep\nbatch_size: 1000\n"
    )
    (tmp_path / "p.yaml").write_text(yaml_text)
    specs = [load_spec(str(tmp_path / "p.json")), load_spec(str(tmp_path / "p.yaml")), load_spec(json.dumps(raw))]
    for spec in specs:
        assert [s.use for s in spec.steps] == ["clean_text", f"{USER}.keep_labels"]
        assert spec.steps[1].kind == "filter"
        assert spec.schema == pa.schema([pa.field("id", pa.string()), pa.field("label", pa.int64(), nullable=False)])
        assert spec.schema_extra == "keep" and spec.batch_size == 1000
    assert len({s.digest() for s in specs}) == 1


def test_colon_form_and_class_kind() -> None:
    spec = parse_spec({"steps": [{"use": f"{USER}:shout"}]})
    assert spec.steps[0].kind == "map"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([], "must be a mapping"),
        ({"stepz": []}, r"unknown key\(s\) \['stepz'\]"),
        ({"steps": []}, "steps: must be a non-empty list"),
        ({"steps": [{"args": {}}]}, r"steps\[0\].use: required"),
        ({"steps": [{"use": "clean_text", "with": 1}]}, r"steps\[0\]: unknown key"),
        ({"steps": ["no_such_builtin"]}, r"steps\[0\].use: unknown transform 'no_such_builtin'.*built-in"),
        ({"steps": ["nosuchpkg.module.fn"]}, r"cannot import 'nosuchpkg.module.fn'.*importable"),
        ({"steps": [f"{USER}.missing_fn"]}, r"cannot import .*missing_fn"),
        ({"steps": [f"{USER}.NOT_CALLABLE"]}, "is not callable"),
        ({"steps": [{"use": "clean_text", "kind": "filter"}]}, r"built-in 'clean_text' is a map"),
        ({"steps": [{"use": f"{USER}.shout", "kind": "reduce"}]}, "'reduce' is not one of"),
        ({"steps": [{"use": f"{USER}.shout", "kind": "actor"}]}, "needs a class"),
        ({"steps": [{"use": "clean_text", "args": {"colum": "text"}}]}, r"steps\[0\].args: .*parameters are"),
        ({"steps": [{"use": "embed", "args": {"batchsize": 3}}]}, r"steps\[0\].args"),
        ({"steps": [{"use": "clean_text", "args": [1]}]}, r"args: must be a mapping"),
        ({"steps": [{"use": "embed", "concurrency": 0}]}, r"concurrency must be a positive integer"),
        ({"steps": [{"use": "embed", "num_gpus": -1}]}, r"num_gpus must be a number >= 0"),
        ({"steps": ["clean_text"], "batch_size": "big"}, "batch_size must be a positive integer"),
        ({"steps": ["clean_text"], "version": 2}, "only version 1"),
        ({"steps": ["clean_text"], "schema": {"fields": {"x": "int65"}}}, r"schema.fields.x: unknown type 'int65'"),
        ({"steps": ["clean_text"], "schema": {"fields": {}}}, "non-empty mapping"),
        ({"steps": ["clean_text"], "schema": {"fields": {"x": "int8"}, "extra": "some"}}, "'drop' or 'keep'"),
        ({"steps": [{"use": "to_schema", "args": {"fields": {"x": "strin"}}}]}, r"steps\[0\].args.fields.x"),
    ],
)
def test_bad_specs_name_the_field_and_the_fix(raw: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_spec(raw)


def test_unreadable_or_unparsable_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="--pipeline: no such file"):
        load_spec(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="invalid JSON"):
        load_spec(str(tmp_path / "bad.json"))
    (tmp_path / "bad.yaml").write_text("steps: [unclosed")
    with pytest.raises(SpecError, match="neither valid JSON nor valid YAML"):
        load_spec(str(tmp_path / "bad.yaml"))
    with pytest.raises(SpecError, match="invalid JSON"):
        load_spec("{'single': 'quotes'}")
