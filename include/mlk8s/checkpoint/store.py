"""A checkpoint store whose commits are atomic, verified on load, pruned safely and fenced against zombies.

Layout under the store's root URI::

    generations/g-00000003.json        one claim per process that ever wrote here (the fencing token)
    progress/g-00000003.json           that process's latest step (a cheap heartbeat for "work lost")
    ckpt-g00000003-s000000000450/      one checkpoint: its files, then MANIFEST.json written last
        state.safetensors
        state.json
        MANIFEST.json                  the commit marker: sizes and sha256 of every file, plus small metadata

A checkpoint exists only once its MANIFEST.json does, so a process killed mid-write leaves a directory that
readers skip. Checkpoints sort by (generation, step): the newest writer's lineage wins, so a zombie's late
checkpoint can never shadow the one its successor committed. Object stores have no conditional PUT through
pyarrow, so fencing checks the claims just before the marker is written; the window left between that check
and the PUT is a few milliseconds, far shorter than any pod relaunch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from mlk8s.storage import Location, read_bytes, resolve, write_atomic

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
FORMAT_VERSION = 1
_CKPT_RE = re.compile(r"^ckpt-g(\d{8})-s(\d{12})$")
_GEN_RE = re.compile(r"^g-(\d{8})\.json$")


class CheckpointError(RuntimeError):
    """The store cannot be used as asked (unwritable root, no generation claimed, bad file name)."""


class FencedError(CheckpointError):
    """A newer process has claimed this store; this one is a zombie and must not commit."""


@dataclass(frozen=True, order=True)
class CheckpointInfo:
    """Where a checkpoint lives; ordering is commit precedence (generation first, then step)."""

    generation: int
    step: int
    name: str = field(compare=False)
    uri: str = field(compare=False)


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: every file's bytes matched the manifest."""

    info: CheckpointInfo
    files: dict[str, bytes]
    meta: dict[str, Any]


def checkpoint_name(generation: int, step: int) -> str:
    return f"ckpt-g{generation:08d}-s{step:012d}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CheckpointStore:
    """Checkpoints under one root URI. One instance per process; call :meth:`claim_generation` before commits."""

    def __init__(self, uri: str | Location, *, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise CheckpointError(f"keep_last must be at least 1, got {keep_last}")
        self.root: Location = resolve(uri) if isinstance(uri, str) else uri
        self.keep_last = keep_last
        self.generation: int | None = None
        self._nonce = uuid.uuid4().hex

    @property
    def uri(self) -> str:
        return self.root.uri

    # -- setup -------------------------------------------------------------------------------------------

    def ensure_writable(self) -> None:
        """Create the root and prove we can write and delete there, before any training time is spent."""
        probe = self.root.child(f".probe-{self._nonce}")
        try:
            self.root.fs.create_dir(self.root.path, recursive=True)
            with self.root.fs.open_output_stream(probe.path) as out:
                out.write(b"ok")
            self.root.fs.delete_file(probe.path)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot write to {self.root.uri}: {exc}") from exc

    def _ls(self, loc: Location) -> list[pafs.FileInfo]:
        return list(loc.fs.get_file_info(pafs.FileSelector(loc.path, allow_not_found=True)))

    def generations(self) -> list[int]:
        found = []
        for info in self._ls(self.root.child("generations")):
            match = _GEN_RE.match(info.base_name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def claim_generation(self) -> int:
        """Take the fencing token: generation = newest claim + 1. Every later commit checks it is still newest."""
        claimed = (self.generations() or [0])[-1] + 1
        claim = self.root.child("generations").child(f"g-{claimed:08d}.json")
        self.root.fs.create_dir(self.root.child("generations").path, recursive=True)
        body = {"generation": claimed, "pid": os.getpid(), "host": socket.gethostname(), "nonce": self._nonce}
        body["claimed_at"] = time.time()
        write_atomic(claim, json.dumps(body, sort_keys=True).encode())
        # Two processes that listed at the same instant would pick the same number; the later write wins
        # and the loser finds out here instead of at its first commit.
        if json.loads(read_bytes(claim)).get("nonce") != self._nonce:
            raise FencedError(f"another process claimed generation {claimed} of {self.uri} at the same time")
        self.generation = claimed
        log.info("mlk8s: claimed checkpoint generation=%d uri=%s", claimed, self.uri)
        return claimed

    def check_fence(self) -> None:
        if self.generation is None:
            raise CheckpointError("claim_generation() must be called before committing")
        newest = (self.generations() or [0])[-1]
        if newest > self.generation:
            raise FencedError(
                f"generation {self.generation} is fenced off: a newer process (generation {newest}) has "
                f"claimed {self.uri}; this process is stale and must stop without committing"
            )

    # -- listing and loading -------------------------------------------------------------------------------

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint directory, committed or not, oldest first."""
        found = []
        for info in self._ls(self.root):
            match = _CKPT_RE.match(info.base_name)
            if match and info.type == pafs.FileType.Directory:
                gen, step = int(match.group(1)), int(match.group(2))
                found.append(CheckpointInfo(gen, step, info.base_name, self.root.child(info.base_name).uri))
        return sorted(found)

    def verify(self, info: CheckpointInfo) -> Checkpoint:
        """Read and check one checkpoint; raises CheckpointError saying what is wrong with it."""
        loc = self.root.child(info.name)
        if not self._has_marker(info):
            raise CheckpointError("missing commit marker (a write was interrupted)")
        raw = read_bytes(loc.child(MANIFEST))
        try:
            manifest = json.loads(raw)
            entries = manifest["files"]
            meta = manifest.get("meta", {})
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"unreadable commit marker: {exc}") from exc
        files: dict[str, bytes] = {}
        for name, expected in sorted(entries.items()):
            if loc.fs.get_file_info(loc.child(name).path).type != pafs.FileType.File:
                raise CheckpointError(f"missing file {name}")
            data = read_bytes(loc.child(name))
            if len(data) != expected["size"]:
                raise CheckpointError(f"truncated file {name}: {len(data)} of {expected['size']} bytes")
            if sha256(data) != expected["sha256"]:
                raise CheckpointError(f"bad checksum for {name}")
            files[name] = data
        return Checkpoint(info, files, meta)

    def load_latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies; older ones are tried, with a warning, when newer ones are bad."""
        for info in reversed(self.list_checkpoints()):
            try:
                return self.verify(info)
            except (CheckpointError, OSError) as exc:
                log.warning("mlk8s: skipping checkpoint %s: %s; falling back to an older one", info.uri, exc)
        return None

    # -- committing and pruning ----------------------------------------------------------------------------

    def commit(self, step: int, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> CheckpointInfo:
        """Write ``files``, then the marker with their checksums. Raises FencedError for a zombie writer."""
        self.check_fence()
        assert self.generation is not None
        for name in files:
            if name == MANIFEST or "/" in name or name.startswith("."):
                raise CheckpointError(f"invalid checkpoint file name {name!r}")
        name = checkpoint_name(self.generation, step)
        loc = self.root.child(name)
        loc.fs.create_dir(loc.path, recursive=True)
        entries = {}
        for fname, data in files.items():
            with loc.fs.open_output_stream(loc.child(fname).path) as out:
                out.write(data)
            entries[fname] = {"size": len(data), "sha256": sha256(data)}
        manifest = {
            "format": FORMAT_VERSION,
            "generation": self.generation,
            "step": step,
            "files": entries,
            "meta": dict(meta),
            "committed_at": time.time(),
        }
        try:
            self.check_fence()
        except FencedError:
            self._delete(loc)
            raise
        write_atomic(loc.child(MANIFEST), json.dumps(manifest, sort_keys=True).encode())
        return CheckpointInfo(self.generation, step, name, loc.uri)

    def prune(self, protect: frozenset[str] = frozenset()) -> list[str]:
        """Keep the newest ``keep_last`` committed checkpoints plus ``protect``; drop abandoned partial writes.

        Only the current (unfenced) writer prunes, so a zombie cannot delete its successor's work. A partial
        directory newer than the newest committed one may be a write in flight and is left alone.
        """
        self.check_fence()
        infos = self.list_checkpoints()
        committed = [i for i in infos if self._has_marker(i)]
        keep = {i.name for i in committed[-self.keep_last :]} | set(protect)
        newest = committed[-1] if committed else None
        removed = []
        for info in infos:
            if info.name in keep:
                continue
            is_committed = info in committed
            if not is_committed and (newest is None or info > newest):
                continue
            self._delete(self.root.child(info.name))
            removed.append(info.name)
        return removed

    def _has_marker(self, info: CheckpointInfo) -> bool:
        marker = self.root.child(info.name).child(MANIFEST)
        return bool(marker.fs.get_file_info(marker.path).type == pafs.FileType.File)

    def _delete(self, loc: Location) -> None:
        try:
            loc.fs.delete_dir(loc.path)
        except (OSError, FileNotFoundError) as exc:
            log.warning("mlk8s: could not delete %s: %s", loc.uri, exc)

    # -- progress heartbeat --------------------------------------------------------------------------------

    def write_progress(self, progress: Mapping[str, Any]) -> None:
        """Record how far this generation got, so its successor can report the work a kill lost."""
        if self.generation is None:
            raise CheckpointError("claim_generation() must be called before writing progress")
        directory = self.root.child("progress")
        directory.fs.create_dir(directory.path, recursive=True)
        body = dict(progress, generation=self.generation)
        write_atomic(directory.child(f"g-{self.generation:08d}.json"), json.dumps(body, sort_keys=True).encode())

    def read_progress(self) -> dict[int, dict[str, Any]]:
        """Every generation's last heartbeat; unreadable ones (killed mid-write) are skipped."""
        found: dict[int, dict[str, Any]] = {}
        for info in self._ls(self.root.child("progress")):
            match = _GEN_RE.match(info.base_name)
            if not match:
                continue
            try:
                found[int(match.group(1))] = json.loads(read_bytes(self.root.child("progress").child(info.base_name)))
            except (OSError, ValueError):
                continue
        return found
