"""Storage: the one place that turns a user's URI (s3://, gs://, file://, or a plain path) into a pyarrow
filesystem, and writes objects atomically. Checkpoints, preprocessing output and the pod contract all use it.

Plain paths are what people type on a laptop and what the local backend passes; they are made absolute so a
relaunched process with a different working directory still finds the same files.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs


class UriError(ValueError):
    """The URI cannot name a location we can read or write."""


@dataclass(frozen=True)
class Location:
    """A filesystem plus a path inside it, and the URI a human should see for it."""

    fs: pafs.FileSystem
    path: str
    uri: str

    def child(self, name: str) -> Location:
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", f"{self.uri.rstrip('/')}/{name}")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)


def local_location(path: str | os.PathLike[str]) -> Location:
    """A path on this machine's own disk (the pod's XCom directory, scratch files)."""
    absolute = os.path.abspath(os.fspath(path))
    return Location(pafs.LocalFileSystem(), absolute, absolute)


def resolve(uri: str) -> Location:
    """Resolve ``uri``; raises :class:`UriError` for an empty value or a scheme pyarrow does not know."""
    if not uri or not uri.strip():
        raise UriError("empty URI; give a path or a URI such as s3://bucket/prefix")
    uri = uri.strip()
    if "://" not in uri:
        return local_location(os.path.expanduser(uri))
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise UriError(f"cannot resolve {uri!r}: {exc}") from exc
    return Location(fs, path.rstrip("/") or "/", uri.rstrip("/"))


def write_atomic(loc: Location, data: bytes) -> None:
    """Write ``data`` so a reader sees the old object, the new one, or nothing, never half of one.

    Object stores give this for a single PUT already; on a local disk we write a temporary file and rename it.
    """
    if loc.is_local:
        parent, _, name = loc.path.rpartition("/")
        # Random, not the pid: every container's main process is pid 1, and pods may share a volume.
        tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
        with loc.fs.open_output_stream(tmp) as out:
            out.write(data)
        loc.fs.move(tmp, loc.path)
    else:
        with loc.fs.open_output_stream(loc.path) as out:
            out.write(data)


def read_bytes(loc: Location) -> bytes:
    with loc.fs.open_input_stream(loc.path) as src:
        return bytes(src.read())
