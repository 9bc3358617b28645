"""The single-process reference applies the steps and the declared schema in order."""

from __future__ import annotations

from pathlib import Path

from mlk8s.preprocessing.reference import run_reference
from mlk8s.preprocessing.samples import documents, write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import parse_spec


def test_the_reference_is_the_steps_applied_to_every_row(tmp_path: Path) -> None:
    source = open_input(str(write_documents(tmp_path / "d.jsonl", rows=50)))
    spec = parse_spec(
        {"steps": ["html_to_text", "clean_text", "non_empty_text"], "schema": {"fields": {"id": "string"}}}
    )
    out = run_reference(spec, source, batch_rows=7)
    assert out.column_names == ["id"]
    kept = {r["id"] for r in documents(50).to_pylist() if (r["text"] or r["html"] or "").strip()}
    assert set(out["id"].to_pylist()) == kept
