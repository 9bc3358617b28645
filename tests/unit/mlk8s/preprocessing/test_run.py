"""The run's result: built from its commit, so a relaunch rebuilds exactly what the first run returned."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from mlk8s.preprocessing.commit import AppTransaction, earlier_commit
from mlk8s.preprocessing.run import Progress, result_of
from tests.unit.mlk8s.preprocessing.outputs import commit_rows


def test_the_result_is_the_commits_summary_plus_where_the_commit_is(tmp_path: Path) -> None:
    txn = AppTransaction("app", 1)
    table, commit = commit_rows(str(tmp_path / "t"), [pa.table({"id": ["a"], "x": [1]})], txn=txn)
    result = result_of(commit, table)
    assert result["output_rows"] == 1 and result["delta_version"] == commit.version
    assert result["manifest_uri"] == str(tmp_path / "t" / "_delta_log" / f"{commit.version:020d}.json")
    earlier = earlier_commit(table, txn)
    assert earlier is not None and result_of(earlier, table) == result


def test_progress_counts_filtered_rows() -> None:
    progress = Progress(files=1, input_rows=10, output_rows=7)
    progress.log(final=True)
    assert progress.input_rows - progress.output_rows == 3 and progress.elapsed_s >= 0
