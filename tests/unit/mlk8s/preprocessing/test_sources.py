"""Input listing and format detection, and the single-process readers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlk8s.preprocessing.commit import commit, write_part
from mlk8s.preprocessing.samples import documents, write_documents
from mlk8s.preprocessing.sources import InputError, iter_tables, open_input, read_sample


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


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "raw"])
def test_work_units_cover_the_input_exactly_once(tmp_path: Path, fmt: str) -> None:
    """What the Ray tasks read (unit by unit) is what the single-process reader reads."""
    from mlk8s.preprocessing import sources

    root = tmp_path / "in"
    root.mkdir()
    if fmt == "parquet":
        for i in range(3):
            pq.write_table(documents(50, seed=i), root / f"{i}.parquet", row_group_size=16)
    elif fmt == "jsonl":
        for i in range(3):
            write_documents(root / f"{i}.jsonl", rows=20, seed=i)
    else:
        for i in range(7):
            (root / f"doc{i}.{'html' if i % 2 else 'txt'}").write_text(f"<p>document {i}</p>")
    source = open_input(str(root))
    units = sources.work_units(source)
    if fmt == "parquet":
        assert len(units) == 3 * 4  # 50 rows in row groups of 16
    by_unit = pa.concat_tables([sources.read_unit(source, u) for u in units], promote_options="permissive")
    whole = pa.concat_tables(list(iter_tables(source)), promote_options="permissive")
    key = "id"
    assert sorted(by_unit.to_pylist(), key=lambda r: r[key]) == sorted(whole.to_pylist(), key=lambda r: r[key])


def _units(sizes: list[int]) -> list[dict[str, object]]:
    return [{"paths": [f"f{i}.parquet"], "row_group": 0, "bytes": size} for i, size in enumerate(sizes)]


def test_plan_tasks_groups_consecutive_units_into_about_equal_tasks() -> None:
    """64 row groups on 2 CPUs become 16 tasks of 4 (8 tasks per CPU), in input order, none lost."""
    from mlk8s.preprocessing.sources import TASKS_PER_CPU, plan_tasks

    assert TASKS_PER_CPU == 8
    units = _units([16] * 64)
    tasks = plan_tasks(units, cpus=2)
    assert [len(t) for t in tasks] == [4] * 16
    assert [u for t in tasks for u in t] == units
    assert [len(t) for t in plan_tasks(units, cpus=2, tasks_per_cpu=2)] == [16] * 4


def test_plan_tasks_caps_the_bytes_a_task_reads() -> None:
    from mlk8s.preprocessing.sources import plan_tasks

    tasks = plan_tasks(_units([10] * 100), cpus=1, max_task_bytes=30)
    assert len(tasks) == 34  # 3 units (30 bytes) per task, the last one short
    assert all(sum(int(u["bytes"]) for u in t) <= 30 for t in tasks)  # type: ignore[call-overload]


def test_plan_tasks_keeps_a_unit_larger_than_the_target_whole_and_alone() -> None:
    from mlk8s.preprocessing.sources import plan_tasks

    tasks = plan_tasks(_units([1, 1, 500, 1, 1]), cpus=4)
    assert [[int(u["bytes"]) for u in t] for t in tasks] == [[1, 1], [500], [1, 1]]  # type: ignore[call-overload]


def test_plan_tasks_small_inputs_and_unknown_sizes() -> None:
    """Fewer units than wanted: one task each. Sizes unknown (all 0): grouped by count instead."""
    from mlk8s.preprocessing.sources import plan_tasks

    assert plan_tasks([], cpus=2) == []
    assert [len(t) for t in plan_tasks(_units([5, 5, 5]), cpus=8)] == [1, 1, 1]
    assert [len(t) for t in plan_tasks(_units([0] * 10), cpus=1, tasks_per_cpu=4)] == [3, 3, 3, 1]


@pytest.mark.parametrize("cut", [1, 7, 100, 1000, 10**6])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_byte_ranges_of_a_jsonl_file_hold_every_line_exactly_once(
    tmp_path: Path, cut: int, trailing_newline: bool
) -> None:
    """Cut anywhere (mid-line, on a newline, inside a line longer than the range): each line once, in order."""
    import pyarrow.fs as pafs

    from mlk8s.preprocessing.sources import _read_line_range

    lines = [b'{"i": %d, "t": "%s"}' % (i, b"x" * (i * 37 % 500)) for i in range(40)]
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)
    ranges = [
        _read_line_range(pafs.LocalFileSystem(), str(path), s, min(s + cut, len(data)))
        for s in range(0, len(data), cut)
    ]
    assert b"".join(ranges) == data
    assert all(r == b"" or r.startswith(b"{") for r in ranges)


def test_a_large_jsonl_file_is_read_by_ranges_with_one_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges parse with the types inferred from the file's first range (a number stays double everywhere)."""
    from mlk8s.preprocessing import sources

    monkeypatch.setattr(sources, "JSONL_UNIT_BYTES", 64)
    rows = [{"id": f"r{i}", "score": 1.5 if i == 0 else i, "html": None} for i in range(30)]
    path = tmp_path / "f.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = open_input(str(path))
    units = sources.work_units(source)
    assert len(units) > 10 and all("range" in u for u in units)
    tables = [t for t in (sources.read_unit(source, u) for u in units) if t.num_rows]
    assert {t.schema.field("score").type for t in tables} == {pa.float64()}
    assert sorted(r["id"] for t in tables for r in t.to_pylist()) == sorted(r["id"] for r in rows)


def test_a_gzipped_jsonl_file_is_one_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from mlk8s.preprocessing import sources

    monkeypatch.setattr(sources, "JSONL_UNIT_BYTES", 64)
    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(b'{"id": "r%d"}\n' % i for i in range(200))))
    units = sources.work_units(open_input(str(path)))
    assert len(units) == 1 and "range" not in units[0]
