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


#: Schemes delta-rs (the ``deltalake`` package, which has its own object-store client) can hold a table on.
DELTA_SCHEMES = ("file", "s3", "s3a", "gs", "az", "abfs", "abfss")


def delta_location(uri: str) -> tuple[str, dict[str, str]]:
    """The table URI and storage options ``deltalake`` needs for ``uri`` (the URI pyarrow reads the same files at).

    delta-rs does not take a pyarrow filesystem: it reads the same environment variables (``AWS_ENDPOINT_URL``,
    credentials...) but not pyarrow's URI query, so ``?endpoint_override=&scheme=&region=`` become options.
    On S3 a commit must be a conditional write (``If-None-Match``) to be atomic; that is asked for unless the
    deployment configured a locking provider itself (``AWS_S3_LOCKING_PROVIDER``).
    """
    from urllib.parse import parse_qs, urlsplit

    location = resolve(uri)
    if location.is_local:
        return location.path, {}
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    if scheme not in DELTA_SCHEMES:
        raise UriError(
            f"{uri!r}: a Delta table cannot live on {scheme}://; use a local path, file://, s3://, gs:// or az://"
        )
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options: dict[str, str] = {}
    if "endpoint_override" in query:
        endpoint = query["endpoint_override"]
        if "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        options["AWS_ENDPOINT_URL"] = endpoint
    if query.get("scheme") == "http":
        options["AWS_ALLOW_HTTP"] = "true"
    if "region" in query:
        options["AWS_REGION"] = query["region"]
    if scheme in ("s3", "s3a") and not os.environ.get("AWS_S3_LOCKING_PROVIDER"):
        options.setdefault("conditional_put", "etag")
    return f"{scheme}://{parts.netloc}{parts.path}".rstrip("/"), options
