"""Input listing and format detection: which files are read, in which format, and refusals naming the flag."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlk8s.preprocessing.commit import commit, write_part
from mlk8s.preprocessing.errors import InputError
from mlk8s.preprocessing.readers import iter_tables, read_sample
from mlk8s.preprocessing.samples import documents, write_documents
from mlk8s.preprocessing.sources import open_input


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


def test_committed_output_is_read_through_its_manifest(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    part = write_part(pa.table({"x": [1, 2]}), out, "a1", 2)
    write_part(pa.table({"x": [9]}), out, "stale", 1)  # never committed: must not be read
    commit(out, "a1", [part])
    source = open_input(out)
    assert source.format == "parquet" and len(source.files) == 1
    assert next(iter_tables(source))["x"].to_pylist() == [1, 2]


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
