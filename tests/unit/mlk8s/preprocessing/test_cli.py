"""The CLI refuses bad input with exit code 2 before any work starts, and leaves earlier output alone."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from mlk8s.pod_contract import EXIT_OK, EXIT_USAGE
from mlk8s.preprocessing.cli import main
from mlk8s.preprocessing.commit import commit, write_part
from mlk8s.preprocessing.output import MANIFEST
from mlk8s.preprocessing.samples import write_documents

USER = "tests.unit.mlk8s.preprocessing.user_transforms"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_documents(tmp_path / "docs.jsonl", rows=40)


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """An output directory holding an earlier committed run."""
    out = tmp_path / "out"
    commit(str(out), "earlier", [write_part(pa.table({"id": ["x"]}), str(out), "earlier", 1)])
    return out


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_help_documents_the_flags_and_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "--input",
        "--output",
        "--pipeline",
        "--input-format",
        "--ray-address",
        "RAY_ADDRESS",
        "_manifest.json",
        "input_rows",
        "filtered_rows",
        "Exit codes",
        "non_empty_text",
        "embed",
    ):
        assert needle in text


@pytest.mark.parametrize(
    ("pipeline", "input_name", "match"),
    [
        ('{"steps": "clean_text"}', "docs", "steps: must be a non-empty list"),
        ('{"steps": ["clean_txt"]}', "docs", "unknown transform 'clean_txt'"),
        (f'{{"steps": ["{USER}.no_such"]}}', "docs", "cannot import"),
        ('{"steps": ["clean_text"]}', "missing", "does not exist"),
        (
            '{"steps": ["clean_text"], "schema": {"fields": {"topic": "int64"}}}',
            "docs",
            "does not convert to the declared schema",
        ),
        (f'{{"steps": [{{"use": "{USER}.not_a_mask", "kind": "filter"}}]}}', "docs", "a filter must return"),
        ('{"steps": ["clean_text"], "schema": {"fields": {"title": "string not null"}}}', "docs", "not null"),
        ('{"steps": [{"use": "text_features", "args": {"column": "body"}}]}', "docs", r"steps\[0\].*'body'"),
    ],
)
def test_bad_input_exits_2_before_work_and_keeps_previous_output(
    tmp_path: Path,
    docs: Path,
    previous: Path,
    pipeline: str,
    input_name: str,
    match: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _snapshot(previous)
    input_path = docs if input_name == "docs" else tmp_path / "nope.jsonl"
    code = main(["--input", str(input_path), "--output", str(previous), "--pipeline", pipeline, "--no-result"])
    assert code == EXIT_USAGE
    assert pytest.importorskip("re").search(match, capsys.readouterr().err)
    assert _snapshot(previous) == before


def test_output_inside_the_input_is_refused(tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--input", str(tmp_path), "--output", str(tmp_path / "out"), "--pipeline", '{"steps": ["clean_text"]}']
    )
    assert code == EXIT_USAGE
    assert "overlap" in capsys.readouterr().err


def test_auto_address_is_refused(docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--input", str(docs), "--output", str(tmp_path / "o"), "--ray-address", "auto"])
    assert code == EXIT_USAGE
    assert "'auto'" in capsys.readouterr().err


def test_validate_only_checks_a_good_spec_and_runs_nothing(tmp_path: Path, docs: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "steps:\n  - html_to_text\n  - clean_text\n  - text_features\n  - non_empty_text\n  - embed\n"
        "schema:\n  fields: {id: string, label: int64, n_words: int32, embedding: list<float32>}\n"
    )
    out = tmp_path / "out"
    assert main(["--input", str(docs), "--output", str(out), "--pipeline", str(spec), "--validate-only"]) == EXIT_OK
    assert not out.exists()
    assert json.loads(json.dumps({"ok": True}))  # the CLI wrote nothing, not even a manifest
    assert not (out / MANIFEST).exists()


def test_unsafe_attempt_id_is_refused(docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--input", str(docs), "--output", str(tmp_path / "o"), "--attempt-id", "../escape"])
    assert code == EXIT_USAGE
    assert "--attempt-id" in capsys.readouterr().err
