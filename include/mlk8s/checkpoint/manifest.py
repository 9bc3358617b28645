"""The commit marker of a checkpoint (``MANIFEST.json``): what it holds and how a damaged or foreign one is refused.

A manifest is read from storage that anyone may have written to, by every relaunch: whatever is wrong with it
(unparseable, a field of the wrong type, a file name that climbs out of the directory, a format newer than this
code reads) must become a :class:`~mlk8s.checkpoint.store.CheckpointError` saying what, so the store falls back
to the older checkpoint beside it instead of crashing every relaunch. The checks are written by hand rather than
with pydantic: importing pydantic and building a model costs about half a second of every pod start.

Format 2 adds ``claim_nonce``: the nonce of the generation claim the checkpoint was written under.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 2
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """The manifest cannot be trusted; the message says why."""


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    format: int
    generation: int
    step: int
    files: dict[str, FileEntry]
    meta: dict[str, Any]
    claim_nonce: str | None
    committed_at: float | None = None

    def to_json(self) -> bytes:
        body = {
            "format": self.format,
            "generation": self.generation,
            "step": self.step,
            "files": {name: {"size": e.size, "sha256": e.sha256} for name, e in self.files.items()},
            "meta": self.meta,
            "claim_nonce": self.claim_nonce,
            "committed_at": self.committed_at,
        }
        return json.dumps(body, sort_keys=True).encode()


def check_file_name(name: str) -> None:
    """A checkpoint file is a plain name inside its directory: no separators, no dot files, not the marker."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == "MANIFEST.json":
        raise ManifestError(f"invalid checkpoint file name {name!r}")


def _int(body: dict[str, Any], key: str, minimum: int) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ManifestError(f"field {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _entry(name: str, raw: Any) -> FileEntry:
    check_file_name(name)
    if not isinstance(raw, dict):
        raise ManifestError(f"entry for {name!r} must be an object with size and sha256")
    size, digest = raw.get("size"), raw.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"size of {name!r} must be a non-negative integer, got {size!r}")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise ManifestError(f"sha256 of {name!r} must be 64 hex digits")
    return FileEntry(size, digest)


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest in ``raw``; raises :class:`ManifestError` naming the first problem."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ManifestError("not a JSON object")
    fmt = _int(body, "format", 1)
    if fmt > FORMAT_VERSION:
        raise ManifestError(
            f"written in format {fmt} by a newer mlk8s; this version reads formats up to {FORMAT_VERSION}"
        )
    files = body.get("files")
    if not isinstance(files, dict) or not files:
        raise ManifestError("field 'files' must be a non-empty object")
    meta = body.get("meta", {})
    if not isinstance(meta, dict):
        raise ManifestError("field 'meta' must be an object")
    nonce = body.get("claim_nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise ManifestError("field 'claim_nonce' must be a string")
    committed_at = body.get("committed_at")
    if not isinstance(committed_at, int | float) or isinstance(committed_at, bool):
        committed_at = None
    return Manifest(
        format=fmt,
        generation=_int(body, "generation", 1),
        step=_int(body, "step", 0),
        files={name: _entry(name, entry) for name, entry in files.items()},
        meta=meta,
        claim_nonce=nonce,
        committed_at=None if committed_at is None else float(committed_at),
    )
