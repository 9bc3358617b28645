"""A checkpoint store whose commits are atomic, verified on load, pruned safely and fenced against zombies.

Layout under the store's root URI::

    generations/g-00000003.json        one claim per process that ever wrote here (the fencing token, see
                                       mlk8s.checkpoint.claims; g-00000003-<nonce>.json on object stores)
    progress/g-00000003.json           that process's latest step (a cheap heartbeat for "work lost")
    ckpt-g00000003-s000000000450/      one checkpoint: its files, then MANIFEST.json written last
        state.safetensors
        state.json
        MANIFEST.json                  the commit marker: sizes and sha256 of every file, plus small metadata

A checkpoint exists only once its MANIFEST.json does, so a process killed mid-write leaves a directory that
readers skip. Checkpoints sort by (generation, step): the newest writer's lineage wins, so a zombie's late
checkpoint can never shadow the one its successor committed.

A checkpoint is a resume source only if the claim of its generation exists and is the one it was written under
(its manifest records the claim's nonce). A checkpoint copied in from elsewhere, or left behind when
``generations/`` was lost, is therefore never resumed from, never counted by retention and never deleted by it;
a new claim is numbered above every generation present (claims, checkpoints, heartbeats), so what this process
commits always outranks such strays. Retention keeps the newest ``keep_last`` trusted checkpoints plus the one
resumed from: the checkpoint a relaunch will pick is always among them.

Fencing checks the claims just before the marker is written; on object stores (no conditional PUT through
pyarrow) the window between that check and the PUT is a few milliseconds, far shorter than any pod relaunch.
Every call to the filesystem is bounded (mlk8s.storage.call); the start-up calls also stop at a SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from mlk8s.checkpoint.claims import CLAIMS_DIR, Claims, parse_claim_name
from mlk8s.checkpoint.manifest import (
    FORMAT_VERSION,
    FileEntry,
    Manifest,
    ManifestError,
    check_file_name,
    parse_manifest,
)
from mlk8s.storage import Location, call, make_dirs, read_bytes, resolve, write_atomic

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
PROGRESS_DIR = "progress"
_CKPT_RE = re.compile(r"^ckpt-g(\d{8})-s(\d{12})$")

Data = bytes | memoryview


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
    manifest: Manifest

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.meta


def checkpoint_name(generation: int, step: int) -> str:
    return f"ckpt-g{generation:08d}-s{step:012d}"


def sha256(data: Data) -> str:
    return hashlib.sha256(data).hexdigest()


class CheckpointStore:
    """Checkpoints under one root URI. One instance per process; call :meth:`claim_generation` before commits.

    ``cancelled`` (e.g. "a SIGTERM arrived") interrupts the start-up waits: :meth:`ensure_writable`,
    :meth:`claim_generation`, :meth:`resume_candidates` and :meth:`read_progress` raise
    ``mlk8s.storage.StorageInterrupted`` once it returns True. Commits are bounded but never interrupted.
    """

    def __init__(self, uri: str | Location, *, keep_last: int = 3, cancelled: Callable[[], bool] | None = None) -> None:
        if keep_last < 1:
            raise CheckpointError(f"keep_last must be at least 1, got {keep_last}")
        self.root: Location = resolve(uri) if isinstance(uri, str) else uri
        self.keep_last = keep_last
        self.generation: int | None = None
        self._nonce = uuid.uuid4().hex
        self._cancelled = cancelled
        self.claims = Claims(self.root, self._io)

    @property
    def uri(self) -> str:
        return self.root.uri

    def _io(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        return call(self.root, what, fn, *args)

    def _startup_io(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        return call(self.root, what, fn, *args, cancelled=self._cancelled)

    # -- setup -------------------------------------------------------------------------------------------

    def ensure_writable(self) -> None:
        """Create the root and prove we can write and delete there, before any training time is spent."""
        self._startup_io(f"checking that {self.uri} is writable", self._probe)

    def _probe(self) -> None:
        probe = self.root.child(f".probe-{self._nonce}")
        try:
            self.root.fs.create_dir(self.root.path, recursive=True)
            with self.root.fs.open_output_stream(probe.path) as out:
                out.write(b"ok")
            self.root.fs.delete_file(probe.path)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot write to {self.root.uri}: {exc}") from exc

    def _ls(self, loc: Location, *, startup: bool = False) -> list[pafs.FileInfo]:
        io = self._startup_io if startup else self._io
        infos = io(f"listing {loc.uri}", loc.fs.get_file_info, pafs.FileSelector(loc.path, allow_not_found=True))
        return list(infos)

    def generations(self) -> list[int]:
        """Every claimed generation, oldest first."""
        return sorted({c.generation for c in self.claims.list()})

    def claim_generation(self) -> int:
        """Take the fencing token: a generation above every claim, checkpoint and heartbeat present."""
        floor = max(
            [i.generation for i in self.list_checkpoints(startup=True)]
            + [g for g in self._progress_generations()]
            + [0]
        )
        self.generation = self._startup_io(
            f"claiming a generation under {self.uri}", self.claims.claim, self._nonce, floor
        )
        log.info("mlk8s: claimed checkpoint generation=%d uri=%s", self.generation, self.uri)
        return self.generation

    def check_fence(self) -> None:
        if self.generation is None:
            raise CheckpointError("claim_generation() must be called before committing")
        claims = self.claims.list()  # one listing for both checks: this runs three times per commit
        newest = claims[-1].generation if claims else 0
        if newest > self.generation:
            raise FencedError(
                f"generation {self.generation} is fenced off: a newer process (generation {newest}) has "
                f"claimed {self.uri}; this process is stale and must stop without committing"
            )
        if self._nonce not in self.claims.nonces(self.generation, claims):
            raise FencedError(
                f"the claim of generation {self.generation} under {self.uri}/{CLAIMS_DIR} is gone or no longer "
                "ours; this process must stop without committing"
            )

    # -- listing and loading -------------------------------------------------------------------------------

    def list_checkpoints(self, *, startup: bool = False) -> list[CheckpointInfo]:
        """Every checkpoint directory, committed or not, trusted or not, oldest first."""
        found = []
        for info in self._ls(self.root, startup=startup):
            match = _CKPT_RE.match(info.base_name)
            if match and info.type == pafs.FileType.Directory:
                gen, step = int(match.group(1)), int(match.group(2))
                found.append(CheckpointInfo(gen, step, info.base_name, self.root.child(info.base_name).uri))
        return sorted(found)

    def _manifest(self, info: CheckpointInfo) -> Manifest:
        loc = self.root.child(info.name).child(MANIFEST)
        if self._io(f"reading {loc.uri}", loc.fs.get_file_info, loc.path).type != pafs.FileType.File:
            raise CheckpointError("missing commit marker (a write was interrupted)")
        try:
            manifest = parse_manifest(self._io(f"reading {loc.uri}", read_bytes, loc))
        except ManifestError as exc:
            raise CheckpointError(f"unreadable commit marker: {exc}") from exc
        if (manifest.generation, manifest.step) != (info.generation, info.step):
            raise CheckpointError(
                f"commit marker names generation {manifest.generation} step {manifest.step}, not the directory's"
            )
        return manifest

    def verify(self, info: CheckpointInfo) -> Checkpoint:
        """Read and check one checkpoint; raises CheckpointError saying what is wrong with it."""
        manifest = self._manifest(info)
        loc = self.root.child(info.name)
        files: dict[str, bytes] = {}
        for name, expected in sorted(manifest.files.items()):
            child = loc.child(name)
            if self._io(f"reading {child.uri}", child.fs.get_file_info, child.path).type != pafs.FileType.File:
                raise CheckpointError(f"missing file {name}")
            data = self._io(f"reading {child.uri}", read_bytes, child)
            if len(data) != expected.size:
                raise CheckpointError(f"truncated file {name}: {len(data)} of {expected.size} bytes")
            if sha256(data) != expected.sha256:
                raise CheckpointError(f"bad checksum for {name}")
            files[name] = data
        return Checkpoint(info, files, manifest)

    def trusted(self, infos: list[CheckpointInfo]) -> list[CheckpointInfo]:
        """The checkpoints whose generation was claimed here (the others were copied in or outlived their claim)."""
        claimed = set(self.generations())
        return [i for i in infos if i.generation in claimed]

    def resume_candidates(self) -> Iterator[Checkpoint]:
        """Verified, trusted checkpoints, newest first; each one skipped says why in a warning."""
        infos = self.list_checkpoints(startup=True)
        trusted = self.trusted(infos)
        strays = [i.name for i in infos if i not in trusted]
        if strays:
            log.warning(
                "mlk8s: ignoring %d checkpoint(s) whose generation has no claim under %s/%s (copied in, or the "
                "claims were lost); they are never resumed from nor deleted: %s",
                len(strays),
                self.uri,
                CLAIMS_DIR,
                ", ".join(strays),
            )
        for info in reversed(trusted):
            try:
                checkpoint = self.verify(info)
                nonce = checkpoint.manifest.claim_nonce
                if nonce is not None and nonce not in self.claims.nonces(info.generation):
                    raise CheckpointError(f"written under another claim of generation {info.generation}")
            except (CheckpointError, OSError) as exc:
                log.warning("mlk8s: skipping checkpoint %s: %s; falling back to an older one", info.uri, exc)
                continue
            yield checkpoint

    def load_latest(self) -> Checkpoint | None:
        """The newest trusted checkpoint that verifies; older ones are tried, with a warning, when newer are bad."""
        return next(self.resume_candidates(), None)

    # -- committing and pruning ----------------------------------------------------------------------------

    def commit(self, step: int, files: Mapping[str, Data], meta: Mapping[str, Any]) -> CheckpointInfo:
        """Write ``files``, then the marker with their checksums. Raises FencedError for a zombie writer."""
        self.check_fence()
        assert self.generation is not None
        for name in files:
            try:
                check_file_name(name)
            except ManifestError as exc:
                raise CheckpointError(str(exc)) from None
        name = checkpoint_name(self.generation, step)
        loc = self.root.child(name)
        self._io(f"creating {loc.uri}", make_dirs, loc)
        entries = {}
        for fname, data in files.items():
            self._io(f"writing {loc.child(fname).uri}", _write, loc.child(fname), data)
            entries[fname] = FileEntry(len(data), sha256(data))
        manifest = Manifest(FORMAT_VERSION, self.generation, step, entries, dict(meta), self._nonce, time.time())
        try:
            self.check_fence()
        except FencedError:
            self._delete(loc)
            raise
        marker = loc.child(MANIFEST)
        self._io(f"writing {marker.uri}", write_atomic, marker, manifest.to_json())
        return CheckpointInfo(self.generation, step, name, loc.uri)

    def prune(self, protect: frozenset[str] = frozenset()) -> list[str]:
        """Keep the newest ``keep_last`` committed trusted checkpoints plus ``protect``; drop abandoned writes.

        Only the current (unfenced) writer prunes, so a zombie cannot delete its successor's work. A partial
        directory newer than the newest committed one may be a write in flight and is left alone, and so is
        everything of an unclaimed generation.
        """
        self.check_fence()
        infos = self.trusted(self.list_checkpoints())
        committed = [i for i in infos if self._has_marker(i)]
        keep = {i.name for i in committed[-self.keep_last :]} | set(protect)
        newest = committed[-1] if committed else None
        removed = []
        for info in infos:
            if info.name in keep:
                continue
            if info not in committed and (newest is None or info > newest):
                continue
            self._delete(self.root.child(info.name))
            removed.append(info.name)
        return removed

    def _has_marker(self, info: CheckpointInfo) -> bool:
        marker = self.root.child(info.name).child(MANIFEST)
        return bool(self._io(f"reading {marker.uri}", marker.fs.get_file_info, marker.path).type == pafs.FileType.File)

    def _delete(self, loc: Location) -> None:
        try:
            self._io(f"deleting {loc.uri}", loc.fs.delete_dir, loc.path)
        except (OSError, FileNotFoundError) as exc:
            log.warning("mlk8s: could not delete %s: %s", loc.uri, exc)

    # -- progress heartbeat --------------------------------------------------------------------------------

    def write_progress(self, progress: Mapping[str, Any]) -> None:
        """Record how far this generation got, so its successor can report the work a kill lost."""
        if self.generation is None:
            raise CheckpointError("claim_generation() must be called before writing progress")
        directory = self.root.child(PROGRESS_DIR)
        self._io(f"creating {directory.uri}", make_dirs, directory)
        body = dict(progress, generation=self.generation)
        target = directory.child(f"g-{self.generation:08d}.json")
        self._io(f"writing {target.uri}", write_atomic, target, json.dumps(body, sort_keys=True).encode())

    def _progress_generations(self) -> list[int]:
        found = []
        for info in self._ls(self.root.child(PROGRESS_DIR), startup=True):
            parsed = parse_claim_name(info.base_name)
            if parsed is not None:
                found.append(parsed[0])
        return found

    def read_progress(self) -> dict[int, dict[str, Any]]:
        """Every generation's last heartbeat; unreadable ones (killed mid-write) are skipped."""
        found: dict[int, dict[str, Any]] = {}
        directory = self.root.child(PROGRESS_DIR)
        for info in self._ls(directory, startup=True):
            parsed = parse_claim_name(info.base_name)
            if parsed is None:
                continue
            try:
                body = json.loads(self._startup_io(f"reading {info.path}", read_bytes, directory.child(info.base_name)))
            except (OSError, ValueError):
                continue
            if isinstance(body, dict):
                found[parsed[0]] = body
        return found


def _write(loc: Location, data: Data) -> None:
    with loc.fs.open_output_stream(loc.path) as out:
        out.write(data)
