"""Committing a run's parts exactly once: one Delta commit that replaces the run's partition, fenced by an
application transaction.

Only the driver commits, once every part is written. The commit is a single write of the table's next log
entry, so readers see the previous version or the new one, never a mix, and a killed run leaves no visible
row. It removes the partition's earlier files and adds this run's in the same commit, so a relaunch, a retry or
a rerun leaves exactly one copy of the partition; other partitions are untouched.

Idempotency and fencing use Delta's application transactions: a commit records ``(app id, version)`` (the
operator derives them from the task run and its try number). A driver that finds its version, or a newer one,
already committed commits nothing: before work that means "done already" (:func:`earlier_commit`), at commit
time "fenced" (:class:`FencedError`). delta-rs refuses a concurrent commit that carries the same app id, so of two
racing drivers exactly one commits. The run summary goes into the commit's info, so a relaunch that finds its
version committed rebuilds its result from the log instead of redoing the job.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mlk8s.preprocessing.errors import CommitError, FencedError, OutputError
from mlk8s.preprocessing.parts import Part
from mlk8s.preprocessing.table import OutputTable, first_line

logger = logging.getLogger(__name__)

#: Keys of the commit info that mlk8s writes: the run summary, this commit's id, and its transaction.
SUMMARY_KEY = "mlk8s.summary"
COMMIT_ID_KEY = "mlk8s.commit_id"
TXN_KEY = "mlk8s.txn"
#: How far back in the table's history a relaunch looks for its own commit.
HISTORY_LIMIT = 1000
APP_ID = re.compile(r"[\x21-\x7e]{1,512}")  # printable ASCII, no spaces


@dataclass(frozen=True)
class AppTransaction:
    """Delta's application transaction: commits of one task run share ``app_id``; ``version`` is its try."""

    app_id: str
    version: int

    @classmethod
    def parse(cls, app_id: str | None, version: int | None) -> AppTransaction | None:
        if app_id is None and version is None:
            return None
        if app_id is None or version is None:
            raise OutputError("--txn-app-id and --txn-version go together: pass both (or neither)")
        if not APP_ID.fullmatch(app_id):
            raise OutputError(f"--txn-app-id: {app_id!r} must be 1-512 printable ASCII characters without spaces")
        if version < 0:
            raise OutputError(f"--txn-version: {version} must be >= 0 (the task's try number)")
        return cls(app_id, version)

    def as_dict(self) -> dict[str, Any]:
        return {"app_id": self.app_id, "version": self.version}


@dataclass(frozen=True)
class Commit:
    """A commit of mlk8s's in the table's log: its Delta version and the summary the run wrote into it."""

    version: int
    summary: dict[str, Any]


def committed_version(table: OutputTable, txn: AppTransaction) -> int | None:
    """The newest version of ``txn.app_id`` the table has committed (``None``: none yet)."""
    version = table.delta_table().transaction_version(txn.app_id)
    return None if version is None else int(version)


def earlier_commit(table: OutputTable, txn: AppTransaction) -> Commit | None:
    """Before work: this transaction's commit if it already landed (a relaunch after the commit); ``None``
    when it is still to be done. A newer version committed means this driver is a zombie: fenced."""
    committed = committed_version(table, txn)
    if committed is None or committed < txn.version:
        return None
    if committed > txn.version:
        raise FencedError(
            f"fenced: {txn.app_id} already committed version {committed}, newer than this driver's "
            f"{txn.version}; this driver of an earlier try commits nothing"
        )
    found = find_commit(table, TXN_KEY, txn.as_dict())
    if found is None:
        raise CommitError(
            f"{txn.app_id} version {txn.version} is committed to {table.uri}, but its commit info is no longer in "
            f"the last {HISTORY_LIMIT} log entries; its result cannot be rebuilt (rerun with a new --txn-version)"
        )
    return found


def find_commit(table: OutputTable, key: str, value: Any) -> Commit | None:
    """The newest commit whose info has ``key`` equal to ``value``."""
    for info in table.delta_table().history(limit=HISTORY_LIMIT):
        if info.get(key) == value:
            summary = info.get(SUMMARY_KEY)
            return Commit(int(info["version"]), dict(summary) if isinstance(summary, dict) else {})
    return None


def verify_staged(table: OutputTable, parts: list[Part]) -> None:
    """Every reported part is on storage with the size its task reported, before anything is committed."""
    paths = [table.location.child(p.path).path for p in parts]
    infos = table.location.fs.get_file_info(paths) if paths else []
    for part, info in zip(parts, infos, strict=True):
        if info.size != part.bytes:
            raise CommitError(
                f"staged part {part.path} is missing or has {info.size} bytes, expected {part.bytes}; nothing "
                "committed, the table is as it was"
            )


def commit_parts(
    table: OutputTable, parts: list[Part], *, txn: AppTransaction | None, summary: dict[str, Any]
) -> Commit:
    """Replace the run's partition with ``parts`` in one commit; return the commit (its Delta version)."""
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction

    if len({p.path for p in parts}) != len(parts):
        raise CommitError("two parts reported the same path; nothing committed, the table is as it was")
    verify_staged(table, parts)
    dt = table.delta_table()
    if txn is not None:
        committed = dt.transaction_version(txn.app_id)
        if committed is not None and committed >= txn.version:
            raise _fenced(table, txn, int(committed))
    commit_id = uuid.uuid4().hex
    info: dict[str, Any] = {SUMMARY_KEY: summary, COMMIT_ID_KEY: commit_id}
    if txn is not None:
        info[TXN_KEY] = txn.as_dict()
    values = table.partition.as_dict()
    stats = {p.path: json.dumps({"numRecords": p.rows}) for p in parts}
    actions: list[AddAction | RemoveAction] = [
        AddAction(p.path, p.bytes, values, int(time.time() * 1000), True, stats[p.path]) for p in parts
    ]
    properties = CommitProperties(
        custom_metadata=info,
        app_transactions=None if txn is None else [Transaction(txn.app_id, txn.version)],
    )
    try:
        dt.create_write_transaction(
            actions,
            "overwrite",
            table.full_schema,
            partition_by=table.partition.keys or None,
            partition_filters=table.partition.filters(),
            commit_properties=properties,
        )
    except CommitFailedError as exc:
        if txn is not None:
            now = committed_version(table, txn)
            if now is not None and now >= txn.version:
                raise _fenced(table, txn, now) from None
        raise CommitError(
            f"the commit to {table.uri} failed ({first_line(exc)}); nothing of this run was committed, the table "
            "is as it was"
        ) from None
    found = find_commit(table, COMMIT_ID_KEY, commit_id)
    if found is None:
        raise CommitError(f"committed to {table.uri}, but the commit is not in the table's history")
    logger.info(
        "committed: table=%s delta_version=%d partition=%s files=%d rows=%s",
        table.uri,
        found.version,
        table.partition.directory or "(whole table)",
        len(parts),
        summary.get("output_rows"),
    )
    return found


def _fenced(table: OutputTable, txn: AppTransaction, committed: int) -> FencedError:
    return FencedError(
        f"fenced: another driver of {txn.app_id} committed version {committed} to {table.uri} first; this "
        "driver's parts were not committed (the table holds that driver's result)"
    )


def vacuum(table: OutputTable, retention_hours: int) -> list[str]:
    """Delete files no version within the retention needs: parts of killed or fenced runs, replaced parts.

    A file the current version references is never removed; one an older version or a run still in flight
    needs is kept while it is younger than ``retention_hours`` (so the retention must exceed the longest run
    and the oldest version a reader pins). Listing first keeps a table with nothing to remove free of
    vacuum's own log entries.
    """
    dt = table.delta_table()
    kwargs: dict[str, Any] = {"retention_hours": retention_hours, "enforce_retention_duration": False, "full": True}
    if not dt.vacuum(dry_run=True, **kwargs):
        return []
    removed = list(dt.vacuum(dry_run=False, **kwargs))
    logger.info(
        "vacuum: removed %d file(s) no version within %s h needs from %s", len(removed), retention_hours, table.uri
    )
    return removed
