"""Exactly-once output: parts are staged under an attempt directory, and the manifest, written last, commits.

Layout under the output URI::

    _manifest.json                      the commit: which files, row counts, content hash (written last)
    _attempts/<attempt_id>/part-<sha256>.parquet

An attempt writes only inside its own directory, which no reader looks at until a manifest names it. The
manifest is replaced in one step (a rename on local disks; a single object write on object stores), so a
reader sees either the previous commit or the new one, never a mix. A killed or failed run therefore leaves
the previous output intact and nothing partial visible; a rerun replaces the manifest instead of adding a
second copy. After a commit, attempt directories the manifest does not name are deleted.

The ``_`` prefix keeps generic readers (pyarrow datasets, Spark, Ray Data) from picking up staged parts by
directory listing: they read the committed files through the manifest (:func:`read_output`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.preprocessing.errors import CommitError
from mlk8s.preprocessing.output import ATTEMPTS, MANIFEST, MANIFEST_FORMAT, fs_and_root, join_uri
from mlk8s.storage import Location, write_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One written Parquet file, as the task that wrote it reports it."""

    path: str  # relative to the output root
    rows: int
    bytes: int
    sha256: str
    input_rows: int


def new_attempt_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def attempt_dir(attempt_id: str) -> str:
    return f"{ATTEMPTS}/{attempt_id}"


def write_part(table: pa.Table, output_uri: str, attempt_id: str, input_rows: int) -> Part:
    """Write one Parquet file into the attempt directory, named by its content hash.

    A retried task writes the same bytes to the same name, so a retry cannot add a second copy of a block.
    """
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{attempt_dir(attempt_id)}/part-{digest[:32]}.parquet"
    fs, root = fs_and_root(output_uri)
    target = f"{root}/{relative}"
    fs.create_dir(f"{root}/{attempt_dir(attempt_id)}", recursive=True)
    write_atomic(Location(fs, target, join_uri(output_uri, relative)), data)
    return Part(relative, table.num_rows, len(data), digest, input_rows)


def content_hash(parts: list[Part]) -> str:
    """One hash over the committed files' hashes, independent of the order the tasks finished in.

    It pins down exactly which bytes this commit holds (integrity). Two runs over the same input can
    split rows into files differently, so compare runs by their rows, not by this hash.
    """
    h = hashlib.sha256()
    for digest in sorted(p.sha256 for p in parts):
        h.update(digest.encode())
    return h.hexdigest()


def commit(
    output_uri: str,
    attempt_id: str,
    parts: list[Part],
    *,
    unwritten_input_rows: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify the staged parts, write the manifest last, then delete what no manifest names.

    ``unwritten_input_rows``: input rows of tasks that wrote no part (every row filtered out, or a byte range
    that held no record); the manifest's ``input_rows`` counts them with the parts' own.

    Raises :class:`CommitError` (and commits nothing) when a reported part is missing or has another size.
    """
    fs, root = fs_and_root(output_uri)
    staged_dir = f"{root}/{attempt_dir(attempt_id)}"
    on_disk: dict[str, int] = {}
    if fs.get_file_info(staged_dir).type == pafs.FileType.Directory:
        for info in fs.get_file_info(pafs.FileSelector(staged_dir)):
            on_disk[info.path[len(root) + 1 :]] = int(info.size or 0)
    unique = {p.path: p for p in parts}  # a retried block reports the same file twice: count it once
    for part in unique.values():
        if on_disk.get(part.path) != part.bytes:
            raise CommitError(
                f"staged part {part.path} is missing or has {on_disk.get(part.path)} bytes, expected "
                f"{part.bytes}; nothing committed, the previous output is intact"
            )
    # Files of this attempt that no reported part names (a task that died after writing): remove them so
    # the attempt directory holds exactly what the manifest lists.
    for path in set(on_disk) - set(unique):
        fs.delete_file(f"{root}/{path}")
    files = sorted(unique.values(), key=lambda p: p.path)
    manifest = {
        "format": MANIFEST_FORMAT,
        "attempt_id": attempt_id,
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": sum(p.rows for p in files),
        "input_rows": sum(p.input_rows for p in files) + unwritten_input_rows,
        "bytes": sum(p.bytes for p in files),
        "content_hash": content_hash(files),
        "files": [asdict(p) for p in files],
        **(extra or {}),
    }
    fs.create_dir(root, recursive=True)
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    write_atomic(Location(fs, f"{root}/{MANIFEST}", join_uri(output_uri, MANIFEST)), body)
    logger.info(
        "committed: manifest=%s attempt=%s files=%d rows=%d content_hash=%s",
        join_uri(output_uri, MANIFEST),
        attempt_id,
        len(files),
        manifest["rows"],
        manifest["content_hash"][:16],
    )
    garbage_collect(output_uri, keep=attempt_id)
    return manifest


def garbage_collect(output_uri: str, keep: str) -> None:
    """Delete attempt directories other than ``keep`` (earlier commits, killed or failed runs)."""
    fs, root = fs_and_root(output_uri)
    attempts = f"{root}/{ATTEMPTS}"
    if fs.get_file_info(attempts).type != pafs.FileType.Directory:
        return
    for info in fs.get_file_info(pafs.FileSelector(attempts)):
        if info.base_name != keep and info.type == pafs.FileType.Directory:
            fs.delete_dir(info.path)
            logger.info("removed uncommitted or superseded attempt %s", info.base_name)
    for info in fs.get_file_info(pafs.FileSelector(root)):
        if info.base_name.startswith(f".{MANIFEST}.tmp-"):  # a writer killed mid-write (storage.write_atomic)
            fs.delete_file(info.path)
