"""Input listing and format detection: which files are read, in which format, and refusals naming the flag."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlk8s.preprocessing.errors import InputError
from mlk8s.preprocessing.parts import write_part
from mlk8s.preprocessing.readers import iter_tables, read_sample
from mlk8s.preprocessing.samples import documents, write_documents
from mlk8s.preprocessing.sources import open_input, schema_conflicts
from tests.unit.mlk8s.preprocessing.outputs import commit_rows, legacy_output, rows


def test_formats_are_detected_and_hidden_files_skipped(tmp_path: Path) -> None:
    write_documents(tmp_path / "d" / "a.jsonl", rows=10)
    write_documents(tmp_path / "d" / "sub" / "b.jsonl", rows=5, seed=8)
    write_documents(tmp_path / "d" / "_tmp" / "c.jsonl", rows=5)
    (tmp_path / "d" / ".hidden.jsonl").write_text("{}\n")
    source = open_input(str(tmp_path / "d"))
    assert source.format == "jsonl" and [Path(f).name for f in source.files] == ["a.jsonl", "b.jsonl"]
    assert sum(t.num_rows for t in iter_tables(source, batch_rows=4)) == 15


def test_parquet_and_raw_inputs(tmp_path: Path) -> None:
    pq.write_table(documents(20), tmp_path / "docs.parquet")
    source = open_input(str(tmp_path / "docs.parquet"))
    assert source.format == "parquet"
    assert read_sample(source, 7).num_rows == 7
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "one.txt").write_text("hello")
    (raw / "two.html").write_text("<b>hi</b>")
    table = next(iter_tables(open_input(str(raw))))
    assert sorted(table["id"].to_pylist()) == ["one.txt", "two.html"]


def test_committed_outputs_are_read_through_their_commit(tmp_path: Path) -> None:
    """A Delta table: only its current version's files, partition values as columns; the old layout too."""
    out = str(tmp_path / "t")
    table, _ = commit_rows(out, [rows(0, 2)], value="day1")
    write_part(rows(9, 1), out, table.partition.directory, "stale", 1)  # never committed: must not be read
    commit_rows(out, [rows(5, 1)], value="day2")
    source = open_input(out)
    assert source.format == "parquet" and len(source.files) == 2
    got = sorted((r["x"], r["run_key"]) for t in iter_tables(source) for r in t.to_pylist())
    assert got == [(0, "day1"), (1, "day1"), (5, "day2")]
    old = open_input(str(legacy_output(tmp_path / "old", [rows(0, 2)])))
    assert next(iter_tables(old))["x"].to_pylist() == [0, 1]


def test_an_empty_file_among_good_ones_is_refused_before_work(tmp_path: Path) -> None:
    write_documents(tmp_path / "in" / "a.jsonl", rows=5)
    (tmp_path / "in" / "b.jsonl").write_bytes(b"")
    with pytest.raises(InputError, match=r"b.jsonl is empty \(0 bytes\)"):
        open_input(str(tmp_path / "in"))


def test_parquet_files_with_different_schemas_are_refused_unless_declared(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": ["a"], "label": [1]}), tmp_path / "in" / "a.parquet")
    pq.write_table(pa.table({"id": ["b"], "label": ["spam"]}), tmp_path / "in" / "b.parquet")
    source = open_input(str(tmp_path / "in"))
    with pytest.raises(InputError, match=r"a.parquet and .*b.parquet have different schemas .*'label': 'int64'"):
        schema_conflicts(source, None, "drop")
    declared = pa.schema([("id", pa.string()), ("label", pa.string())])
    schema_conflicts(source, declared, "keep")  # converted to the declared type: accepted
    with pytest.raises(InputError, match="different schemas"):
        schema_conflicts(source, pa.schema([("id", pa.string())]), "keep")  # label kept, undeclared


@pytest.mark.parametrize(
    ("setup", "fmt", "match"),
    [
        ("missing", "auto", "does not exist"),
        ("empty", "auto", "holds no files"),
        ("mixed", "auto", "mixes formats"),
        ("unknown", "auto", "no file under .* has a known extension"),
        ("unknown", "csv", "--input-format: 'csv' is not one of"),
    ],
)
def test_bad_inputs_name_the_flag(tmp_path: Path, setup: str, fmt: str, match: str) -> None:
    target = tmp_path / "in"
    if setup != "missing":
        target.mkdir()
    if setup == "mixed":
        (target / "a.jsonl").write_text("{}\n")
        (target / "b.parquet").write_bytes(b"")
    if setup == "unknown":
        (target / "a.csv").write_text("x\n1\n")
    with pytest.raises(InputError, match=match):
        open_input(str(target), fmt)
