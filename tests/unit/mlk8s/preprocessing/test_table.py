"""The output table before work: where it may live, its partition, and its schema (fixed unless evolve)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from mlk8s.preprocessing.errors import OutputError, SpecError
from mlk8s.preprocessing.table import Partition, delta_schema, inspect_location, open_table
from tests.unit.mlk8s.preprocessing.outputs import commit_rows, legacy_output, rows


@pytest.mark.parametrize(
    ("items", "match"),
    [
        (["run_key"], "must be KEY=VALUE"),
        (["Run-Key=x"], "must be KEY=VALUE"),
        (["run_key=a/b"], "path-safe"),
        (["run_key=scheduled__2026-01-01T02:00:00+00:00"], "replace ':' and '\\+'"),
        (["run_key=a", "run_key=b"], "given twice"),
    ],
)
def test_bad_partitions_name_the_flag(items: list[str], match: str) -> None:
    with pytest.raises(OutputError, match=match):
        Partition.parse(items)


def test_partition_names_its_directory_and_filters() -> None:
    partition = Partition.parse(["run_key=manual__2026-01-01T02_00_00", "shard=3"])
    assert partition.directory == "run_key=manual__2026-01-01T02_00_00/shard=3"
    assert partition.filters() == [("run_key", "=", "manual__2026-01-01T02_00_00"), ("shard", "=", "3")]
    assert Partition.parse(None).filters() is None and Partition.parse(None).directory == ""


def test_locations_that_cannot_hold_a_table_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        inspect_location(str(tmp_path / "file"))
    with pytest.raises(OutputError, match="old manifest layout"):
        inspect_location(str(legacy_output(tmp_path / "legacy", [rows(0, 1)])))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match="holds files but no Delta table"):
        inspect_location(str(tmp_path / "busy"))
    with pytest.raises(OutputError, match="cannot create"):
        open_table(str(tmp_path / "file" / "below"), Partition(), rows(0, 1).schema)
    assert inspect_location(str(tmp_path / "new"))[1] is False


def test_a_missing_table_is_created_before_work_and_only_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "t"
    open_table(str(out), Partition.parse(["run_key=r1"]), rows(0, 1).schema, create=False)
    assert not out.exists()
    table = open_table(str(out), Partition.parse(["run_key=r1"]), rows(0, 1).schema)
    dt = DeltaTable(str(out))
    assert dt.version() == 0 and dt.metadata().partition_columns == ["run_key"]
    assert table.full_schema.names == ["id", "x", "run_key"]


def test_the_partition_keys_must_be_the_tables(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    commit_rows(out, [rows(0, 1)])
    with pytest.raises(OutputError, match=r"partitioned by \['run_key'\]; pass --partition run_key=VALUE"):
        open_table(out, Partition(), rows(0, 1).schema)
    with pytest.raises(OutputError, match="is also a column"):
        open_table(out, Partition.parse(["x=1"]), rows(0, 1).schema)


def test_a_schema_change_is_refused_unless_the_spec_evolves_it(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    commit_rows(out, [rows(0, 1)])
    partition = Partition.parse(["run_key=r2"])
    wider = rows(0, 1).append_column("score", pa.array([1.5]))
    with pytest.raises(SpecError, match=r"new \['score'\].*schema.evolve: true"):
        open_table(out, partition, wider.schema)
    retyped = pa.schema([("id", pa.string()), ("x", pa.string())])
    with pytest.raises(SpecError, match=r"changed \['x: int64 -> string'\].*types never change"):
        open_table(out, partition, retyped, evolve=True)
    evolved = open_table(out, partition, wider.schema, evolve=True)
    assert evolved.schema.names == ["id", "x", "score"]
    assert open_table(out, partition, rows(0, 1).schema).schema.names == ["id", "x"]  # unchanged: the table's own


def test_types_delta_cannot_hold_are_refused_naming_the_column() -> None:
    with pytest.raises(SpecError, match="column 'h' of type halffloat cannot be stored in a Delta table"):
        delta_schema(pa.schema([("h", pa.float16())]), Partition())
    converted = delta_schema(pa.schema([("s", pa.large_string()), ("n", pa.null())]), Partition())
    assert converted == pa.schema([("s", pa.string()), ("n", pa.string())])
