"""Reading committed outputs: Delta tables (partition, version, evolved columns) and the old manifest layout,
with sizes, sha256 and Parquet page checksums verified, and paths outside the output refused."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from mlk8s.preprocessing.errors import CommitError, CorruptOutputError
from mlk8s.preprocessing.output import committed_files, iter_output, open_output, read_output
from tests.unit.mlk8s.preprocessing.outputs import commit_rows, legacy_output, rows


def test_a_delta_output_by_partition_and_version(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    commit_rows(out, [rows(0, 3)], value="day1")
    _, day2 = commit_rows(out, [rows(10, 2)], value="day2")
    commit_rows(out, [rows(20, 1)], value="day2", attempt="a2")
    whole = read_output(out)
    assert sorted(whole["x"].to_pylist()) == [0, 1, 2, 20] and whole.column_names == ["id", "x", "run_key"]
    assert read_output(out, partition={"run_key": "day2"})["x"].to_pylist() == [20]
    assert read_output(out, partition={"run_key": "day2"}, version=day2.version)["x"].to_pylist() == [10, 11]
    assert read_output(out, ["x"], partition={"run_key": "nope"}).schema.names == ["x"]
    assert sorted(pl.read_delta(out)["x"].to_list()) == [0, 1, 2, 20]
    assert len(committed_files(out)) == 2
    assert [t.num_rows for t in iter_output(out, batch_size=2)] == [2, 1, 1]


def test_a_flipped_bit_or_a_truncated_file_is_an_error_not_other_data(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    table, _ = commit_rows(out, [pa.table({"id": ["a"] * 4000, "x": list(range(4000))})])
    output = open_output(out)
    assert output is not None
    path = Path(output.path(output.files[0]))
    data = bytearray(path.read_bytes())
    data[len(data) // 4] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptOutputError, match="cannot be read .*CRC"):
        read_output(out)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(CorruptOutputError, match="committed with .* bytes, found"):
        read_output(out)


def test_columns_added_later_read_as_null_in_older_files(tmp_path: Path) -> None:
    from mlk8s.preprocessing.commit import commit_parts
    from mlk8s.preprocessing.parts import write_part
    from mlk8s.preprocessing.table import Partition, open_table

    out = str(tmp_path / "t")
    commit_rows(out, [rows(0, 1)], value="day1")
    wider = rows(5, 1).append_column("score", pa.array([0.5], pa.float64()))
    table = open_table(out, Partition.parse(["run_key=day2"]), wider.schema, evolve=True)
    commit_parts(table, [write_part(wider, out, "run_key=day2", "a", 1)], txn=None, summary={})
    got = sorted(read_output(out).to_pylist(), key=lambda r: r["x"])
    assert got == [
        {"id": "r0", "x": 0, "run_key": "day1", "score": None},
        {"id": "r5", "x": 5, "run_key": "day2", "score": 0.5},
    ]


def test_the_old_manifest_layout_is_still_read_and_verified(tmp_path: Path) -> None:
    root = legacy_output(tmp_path / "old", [rows(0, 2), rows(2, 2)])
    assert sorted(read_output(str(root))["x"].to_pylist()) == [0, 1, 2, 3]
    part = root / "_attempts" / "old" / "part-1.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))  # same size, other bytes: only the sha256 can tell
    with pytest.raises(CorruptOutputError, match="sha256 differs"):
        read_output(str(root))


@pytest.mark.parametrize("path", ["../outside.parquet", "/etc/passwd", "_attempts/../../x.parquet", "s3://b/k"])
def test_a_manifest_naming_a_path_outside_the_output_is_refused(tmp_path: Path, path: str) -> None:
    root = legacy_output(tmp_path / "old", [rows(0, 1)])
    manifest = json.loads((root / "_manifest.json").read_text())
    manifest["files"][0]["path"] = path
    (root / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptOutputError, match="outside the output"):
        read_output(str(root))


def test_nothing_committed_and_foreign_manifests(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no committed output"):
        read_output(str(tmp_path))
    (tmp_path / "_manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(CommitError, match="not an mlk8s preprocessing manifest"):
        read_output(str(tmp_path))
