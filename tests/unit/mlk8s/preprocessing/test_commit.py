"""The commit protocol on a local filesystem: staged parts, manifest last, one copy, previous output kept."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from mlk8s.preprocessing.commit import commit, write_part
from mlk8s.preprocessing.errors import CommitError
from mlk8s.preprocessing.output import ATTEMPTS, MANIFEST, committed_files, read_manifest, read_output


def _table(start: int, n: int) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(start, start + n)], "x": list(range(start, start + n))})


def _stage(out: str, attempt: str) -> list:
    return [write_part(_table(0, 5), out, attempt, 6), write_part(_table(5, 3), out, attempt, 3)]


def test_a_retried_block_writes_the_same_file(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = write_part(_table(0, 5), out, "a1", 5)
    again = write_part(_table(0, 5), out, "a1", 5)
    assert first == again
    assert len(list((tmp_path / "out" / ATTEMPTS / "a1").iterdir())) == 1


def test_nothing_is_visible_until_the_manifest_is_written(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    parts = _stage(out, "a1")
    assert read_manifest(out) is None and committed_files(out) == []
    with pytest.raises(FileNotFoundError):
        read_output(out)
    manifest = commit(out, "a1", parts + parts[:1])  # a retried block reported twice counts once
    assert manifest["rows"] == 8 and manifest["input_rows"] == 9 and len(manifest["files"]) == 2
    assert sorted(read_output(out)["x"].to_pylist()) == list(range(8))
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["content_hash"] == manifest["content_hash"]


def test_input_rows_of_tasks_that_wrote_nothing_are_counted(tmp_path: Path) -> None:
    """A task whose rows were all filtered out writes no part; its input rows still count in the manifest."""
    out = str(tmp_path / "out")
    manifest = commit(out, "a1", _stage(out, "a1"), unwritten_input_rows=4)
    assert manifest["rows"] == 8 and manifest["input_rows"] == 9 + 4


def test_a_rerun_replaces_and_leaves_exactly_one_copy(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = commit(out, "a1", _stage(out, "a1"))
    _stage(out, "killed")  # a run that died before committing
    second = commit(out, "a2", _stage(out, "a2"))
    assert second["content_hash"] == first["content_hash"]
    assert read_output(out).num_rows == 8
    assert [p.name for p in (tmp_path / "out" / ATTEMPTS).iterdir()] == ["a2"]


def test_a_part_that_went_missing_fails_the_commit_and_keeps_the_previous_output(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    commit(out, "a1", _stage(out, "a1"))
    before = (tmp_path / "out" / MANIFEST).read_bytes()
    parts = _stage(out, "a2")
    Path(out, parts[0].path).unlink()
    with pytest.raises(CommitError, match="previous output is intact"):
        commit(out, "a2", parts)
    assert (tmp_path / "out" / MANIFEST).read_bytes() == before
    assert read_output(out).num_rows == 8


def test_stray_files_of_the_attempt_are_not_committed(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    parts = _stage(out, "a1")
    orphan = write_part(_table(100, 2), out, "a1", 2)  # written by a task that died before reporting
    commit(out, "a1", parts)
    assert not Path(out, orphan.path).exists()
    assert read_output(out).num_rows == 8


def test_a_foreign_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text('{"format": "something-else"}')
    with pytest.raises(CommitError, match="not an mlk8s preprocessing manifest"):
        read_manifest(str(tmp_path))
