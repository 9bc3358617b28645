"""Training data sources: Delta versions and partitions, Parquet files, the old preprocessing layout; refusals name
the flag to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlk8s.training.data import open_source
from mlk8s.training.task import TaskUsageError
from tests.unit.mlk8s.training.datasets import table, write_delta, write_parquet


@pytest.fixture
def delta(tmp_path: Path) -> Path:
    root = tmp_path / "delta"
    write_delta(root, table(30, run_key="a", seed=1), partition_by=["run_key"])
    write_delta(root, table(20, run_key="b", seed=2), partition_by=["run_key"])
    return root


def test_a_delta_table_reads_its_latest_version_or_the_one_pinned(delta: Path) -> None:
    latest = open_source(str(delta))
    assert (latest.kind, latest.version, latest.rows) == ("delta", 1, 50)
    assert [f.loc.path for f in latest.files] == sorted(f.loc.path for f in latest.files)
    first = open_source(str(delta), version=0)
    assert (first.version, first.rows) == (0, 30)
    assert first.identity() == {"kind": "delta", "uri": str(delta), "version": 0, "partition": {}}


def test_only_the_files_the_log_commits_are_read(delta: Path) -> None:
    """A preprocessing run killed before its commit leaves Parquet files no version names: never trained on."""
    import shutil

    committed = sorted((delta / "run_key=a").glob("*.parquet"))
    shutil.copy(committed[0], delta / "run_key=a" / "part-of-a-killed-run.parquet")
    source = open_source(str(delta))
    assert source.rows == 50
    assert not any("killed" in f.loc.path for f in source.files)


def test_a_partition_selects_its_rows(delta: Path) -> None:
    source = open_source(str(delta), partition={"run_key": "b"})
    assert source.rows == 20 and source.partition == {"run_key": "b"}
    rows = sum(batch.num_rows for _, _, batch in source.batches(["embedding", "label"], 7))
    assert rows == 20


@pytest.mark.parametrize(
    ("kwargs", "flag", "message"),
    [
        ({"partition": {"day": "1"}}, "--data-partition", "day is not a partition column"),
        ({"partition": {"run_key": "zzz"}}, "--data-partition", "has no rows"),
        ({"version": 5}, "--data-version", "has no version 5; its latest is 1"),
    ],
)
def test_bad_delta_selections_name_the_flag(delta: Path, kwargs: dict, flag: str, message: str) -> None:
    with pytest.raises(TaskUsageError, match=message) as exc:
        open_source(str(delta), **kwargs)
    assert exc.value.flag == flag


def test_a_vacuumed_version_is_a_clear_error(delta: Path) -> None:
    import shutil

    (delta / "_delta_log" / "00000000000000000000.json").unlink()  # as a log clean-up would leave it
    shutil.rmtree(delta / "run_key=a")
    with pytest.raises(TaskUsageError) as exc:
        open_source(str(delta), version=0)
    assert exc.value.flag in ("--data-version", "--data")


def test_plain_parquet_has_no_versions_nor_partitions(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "d" / "part-0.parquet", table(5))
    write_parquet(tmp_path / "d" / "_hidden" / "x.parquet", table(3))
    source = open_source(str(tmp_path / "d"))
    assert (source.kind, source.rows, [f.loc.path for f in source.files]) == ("parquet", 5, [str(path)])
    with pytest.raises(TaskUsageError, match="not a Delta table") as exc:
        open_source(str(path), version=0)
    assert exc.value.flag == "--data-version"
    with pytest.raises(TaskUsageError) as exc:
        open_source(str(path), partition={"run_key": "a"})
    assert exc.value.flag == "--data-partition"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: (p / "empty").mkdir(), "holds no Parquet files"),
        (lambda p: (p / "empty").write_bytes(b"not parquet at all"), "is not readable Parquet"),
    ],
)
def test_missing_or_unreadable_data_names_the_flag(tmp_path: Path, setup: object, message: str) -> None:
    setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(TaskUsageError, match=message) as exc:
        open_source(str(tmp_path / "empty"))
    assert exc.value.flag == "--data"


def test_an_output_in_the_old_manifest_layout_is_read_through_its_manifest(tmp_path: Path) -> None:
    from tests.unit.mlk8s.preprocessing.outputs import legacy_output

    output = str(legacy_output(tmp_path / "embedded", [table(10, seed=s) for s in (1, 2)]))
    source = open_source(output)
    assert (source.kind, source.rows) == ("preprocessing-manifest", 20)
