"""The Delta commit: one commit replaces the run's partition, other partitions untouched, application transactions
make a landed commit final and fence a second driver, a missing part commits nothing, vacuum keeps live files."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from mlk8s.preprocessing.commit import (
    TXN_KEY,
    AppTransaction,
    commit_parts,
    earlier_commit,
    find_commit,
    vacuum,
)
from mlk8s.preprocessing.errors import CommitError, FencedError, OutputError
from mlk8s.preprocessing.parts import write_part
from tests.unit.mlk8s.preprocessing.outputs import commit_rows, rows, table_for


def _read(uri: str) -> list[dict[str, Any]]:
    return sorted(pa.table(DeltaTable(uri).to_pyarrow_table()).to_pylist(), key=lambda r: (r["run_key"], r["x"]))


def test_a_rerun_replaces_its_partition_in_one_commit_and_leaves_others(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    commit_rows(out, [rows(0, 3)], value="day1")
    _, first = commit_rows(out, [rows(10, 2), rows(12, 1)], value="day2")
    _, again = commit_rows(out, [rows(20, 2)], value="day2", attempt="a2")  # the rerun of day2
    assert again.version == first.version + 1  # one commit: remove and add together
    got = _read(out)
    assert [(r["run_key"], r["x"]) for r in got] == [("day1", 0), ("day1", 1), ("day1", 2), ("day2", 20), ("day2", 21)]


def test_identical_bytes_from_two_tasks_are_two_parts(tmp_path: Path) -> None:
    """Parts were named by content hash: two tasks writing the same rows counted once (rows lost)."""
    out = str(tmp_path / "t")
    commit_rows(out, [rows(0, 4), rows(0, 4)])
    assert len(_read(out)) == 8


def test_a_committed_transaction_is_final_and_fences_a_second_driver(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    txn = AppTransaction("dag/task/-1/run", 1)
    table, commit = commit_rows(out, [rows(0, 2)], txn=txn)
    found = earlier_commit(table, txn)
    assert found is not None and found.version == commit.version and found.summary["output_rows"] == 2
    parts = [write_part(rows(5, 2), out, table.partition.directory, "zombie", 2)]
    with pytest.raises(FencedError, match="fenced: another driver of dag/task/-1/run committed version 1"):
        commit_parts(table, parts, txn=txn, summary={})
    with pytest.raises(FencedError, match="newer than this driver's 0"):
        earlier_commit(table, AppTransaction(txn.app_id, 0))
    assert earlier_commit(table, AppTransaction(txn.app_id, 2)) is None  # the next try commits anew
    assert [r["x"] for r in _read(out)] == [0, 1]


def test_two_drivers_racing_on_one_version_commit_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both pass the pre-commit check (they loaded the table before either committed); delta-rs refuses one."""
    out = str(tmp_path / "t")
    table = table_for(out)
    txn = AppTransaction("dag/task/-1/run", 1)
    original = DeltaTable.create_write_transaction
    barrier = threading.Barrier(2, timeout=30)

    def together(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        barrier.wait()
        original(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", together)
    outcomes: list[Any] = []

    def driver(start: int) -> None:
        parts = [write_part(rows(start, 3), out, table.partition.directory, f"d{start}", 3)]
        try:
            outcomes.append(commit_parts(table, parts, txn=txn, summary={"start": start}))
        except FencedError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=driver, args=(s,)) for s in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    fenced = [o for o in outcomes if isinstance(o, FencedError)]
    committed = [o for o in outcomes if not isinstance(o, FencedError)]
    assert len(fenced) == 1 and len(committed) == 1, outcomes
    assert "fenced" in str(fenced[0])
    assert len(_read(out)) == 3
    assert [h.get(TXN_KEY) for h in DeltaTable(out).history()].count(txn.as_dict()) == 1


def test_a_missing_part_commits_nothing(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    table, before = commit_rows(out, [rows(0, 2)])
    parts = [write_part(rows(5, 2), out, table.partition.directory, "a2", 2)]
    os.unlink(table.location.child(parts[0].path).path)
    with pytest.raises(CommitError, match="missing .* nothing committed"):
        commit_parts(table, parts, txn=None, summary={})
    assert DeltaTable(out).version() == before.version and [r["x"] for r in _read(out)] == [0, 1]


def test_commit_info_holds_the_summary(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    txn = AppTransaction("app", 3)
    table, commit = commit_rows(out, [rows(0, 2)], txn=txn)
    found = find_commit(table, TXN_KEY, txn.as_dict())
    assert found == commit and commit.summary == {"output_rows": 2, "attempt_id": "a1"}


def test_vacuum_removes_a_killed_runs_parts_and_keeps_what_a_version_needs(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    table, _ = commit_rows(out, [rows(0, 2)])
    killed = write_part(rows(50, 2), out, table.partition.directory, "killed", 2)  # a run that died
    commit_rows(out, [rows(10, 2)], attempt="a2")
    live = [p for p in DeltaTable(out).file_uris()]
    assert vacuum(table, 1) == []  # everything younger than the retention stays (a run in flight, a pinned version)
    assert Path(table.location.child(killed.path).path).exists()
    old = time.time() - 3 * 3600
    for path in Path(out).rglob("*.parquet"):
        os.utime(path, (old, old))
    removed = vacuum(table, 1)
    # The killed run's part goes. The replaced part stays: it was removed from the table just now, and a reader
    # may still read the version before (as training pins one); it goes once its removal is older than 1 h.
    assert removed == [killed.path]
    assert DeltaTable(out).file_uris() == live and all(Path(p).exists() for p in live)
    assert [r["x"] for r in _read(out)] == [10, 11]
    assert sorted(pa.table(DeltaTable(out, version=1).to_pyarrow_table())["x"].to_pylist()) == [0, 1]


@pytest.mark.parametrize(
    ("app_id", "version", "match"),
    [
        ("app", None, "go together"),
        (None, 1, "go together"),
        ("has space", 1, "printable ASCII"),
        ("app", -1, "must be >= 0"),
    ],
)
def test_bad_transactions_name_the_flag(app_id: str | None, version: int | None, match: str) -> None:
    with pytest.raises(OutputError, match=match):
        AppTransaction.parse(app_id, version)
    assert AppTransaction.parse(None, None) is None
