"""Storage: the one place that turns a user's URI (s3://, gs://, file://, or a plain path) into a pyarrow
filesystem, writes objects atomically, and bounds every wait on an object store. Checkpoints, preprocessing
output and the pod contract all use it.

Plain paths are what people type on a laptop and what the local backend passes; they are made absolute so a
relaunched process with a different working directory still finds the same files.

Waits are bounded twice. The filesystem itself gets timeouts (S3: connect and request timeouts; GCS: a retry
time limit, whose default of 15 minutes made a ``gs://`` URI with no reachable endpoint hang for 471 s), so a
call gives up on its own. And :func:`call` runs an object-store call on a helper thread while the caller waits
in short slices: it raises :class:`StorageTimeout` naming what it waited for when the deadline passes, and
:class:`StorageInterrupted` as soon as the caller's ``cancelled()`` says so (a SIGTERM), because a blocked
native call would otherwise keep Python's signal handlers from running until it returns. Local disks are
called directly: a local call that hangs is a broken node, which the kubelet handles. The seconds come from
``MLK8S_STORAGE_TIMEOUT_S`` (default 120) unless the caller passes them.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import pyarrow.fs as pafs

T = TypeVar("T")

TIMEOUT_ENV = "MLK8S_STORAGE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 120.0
#: Connecting takes this long at most (or the whole timeout, if that is shorter).
_CONNECT_TIMEOUT_S = 10.0
#: How often a caller blocked on an object store looks at its ``cancelled()``.
_POLL_S = 0.05
#: Calls given up on (timed out or interrupted) whose helper thread may still be blocked in native code.
_abandoned: list[str] = []


class UriError(ValueError):
    """The URI cannot name a location we can read or write."""


class StorageTimeout(OSError):
    """An object-store call did not finish within its timeout."""


class StorageInterrupted(Exception):
    """The caller asked to stop (SIGTERM) while it waited on an object store."""


def default_timeout_s() -> float:
    """Seconds one object-store call may take: ``MLK8S_STORAGE_TIMEOUT_S``, else 120."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UriError(f"{TIMEOUT_ENV}={raw!r} must be a positive number of seconds, e.g. {TIMEOUT_ENV}=120")
    return value


@dataclass(frozen=True)
class Location:
    """A filesystem plus a path inside it, the URI a human should see for it, and how long a call may take."""

    fs: pafs.FileSystem
    path: str
    uri: str
    timeout_s: float = field(default=DEFAULT_TIMEOUT_S, compare=False)

    def child(self, name: str) -> Location:
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", f"{self.uri.rstrip('/')}/{name}", self.timeout_s)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)


def local_location(path: str | os.PathLike[str]) -> Location:
    """A path on this machine's own disk (the pod's XCom directory, scratch files)."""
    absolute = os.path.abspath(os.fspath(path))
    return Location(pafs.LocalFileSystem(), absolute, absolute)


def _with_timeouts(fs: pafs.FileSystem, timeout_s: float) -> pafs.FileSystem:
    """The same filesystem with our timeouts where the URI did not set its own.

    Rebuilt from its pickling state (``__reduce__``: the constructor's own keyword arguments), because
    ``FileSystem.from_uri`` accepts no timeout parameters for S3 and only a retry limit for GCS.
    """
    if isinstance(fs, pafs.S3FileSystem):
        rebuild, (kwargs,) = fs.__reduce__()
        if kwargs.get("connect_timeout", -1) < 0:
            kwargs["connect_timeout"] = min(_CONNECT_TIMEOUT_S, timeout_s)
        if kwargs.get("request_timeout", -1) < 0:
            kwargs["request_timeout"] = timeout_s
        return rebuild(kwargs)
    if isinstance(fs, pafs.GcsFileSystem):
        rebuild, (kwargs,) = fs.__reduce__()
        if kwargs.get("retry_time_limit") is None:
            kwargs["retry_time_limit"] = timedelta(seconds=timeout_s)
        return rebuild(kwargs)
    return fs


def resolve(uri: str, *, timeout_s: float | None = None) -> Location:
    """Resolve ``uri``; raises :class:`UriError` for an empty value or a scheme pyarrow does not know."""
    if not uri or not uri.strip():
        raise UriError("empty URI; give a path or a URI such as s3://bucket/prefix")
    uri = uri.strip()
    timeout = default_timeout_s() if timeout_s is None else timeout_s
    if "://" not in uri:
        absolute = os.path.abspath(os.path.expanduser(uri))
        return Location(pafs.LocalFileSystem(), absolute, absolute, timeout)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise UriError(f"cannot resolve {uri!r}: {exc}") from exc
    return Location(_with_timeouts(fs, timeout), path.rstrip("/") or "/", uri.rstrip("/"), timeout)


def call(
    loc: Location,
    what: str,
    fn: Callable[..., T],
    *args: Any,
    cancelled: Callable[[], bool] | None = None,
) -> T:
    """``fn(*args)``, bounded by ``loc.timeout_s`` and interruptible through ``cancelled`` on object stores.

    ``what`` says what was waited for ("listing s3://b/ckpt"); it is the start of the error message.
    """
    if loc.is_local:
        return fn(*args)
    outcome: list[Any] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append((True, fn(*args)))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=target, name="mlk8s-storage-call", daemon=True).start()
    deadline = time.monotonic() + loc.timeout_s
    while not done.wait(_POLL_S):
        if cancelled is not None and cancelled():
            _abandoned.append(what)
            raise StorageInterrupted(f"stopped while {what} (a stop was requested)")
        if time.monotonic() >= deadline:
            _abandoned.append(what)
            raise StorageTimeout(
                f"{what} did not finish within {loc.timeout_s:g} s; check that the endpoint is reachable and the "
                f"credentials are valid, or raise the timeout ({TIMEOUT_ENV} or --storage-timeout-seconds)"
            )
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def abandoned_calls() -> list[str]:
    """What this process gave up waiting for. A process with any should end with ``os._exit``: the native call
    may still be blocked in its helper thread, and the S3 client's finaliser at interpreter exit waits for it."""
    return list(_abandoned)


def write_atomic(loc: Location, data: bytes | memoryview) -> None:
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


def make_dirs(loc: Location) -> None:
    """Create ``loc`` and its parents (a no-op on object stores without directories)."""
    loc.fs.create_dir(loc.path, recursive=True)


#: Schemes delta-rs (the ``deltalake`` package, which has its own object-store client) can hold a table on.
DELTA_SCHEMES = ("file", "s3", "s3a", "gs", "az", "abfs", "abfss")


def delta_location(uri: str, timeout_s: float | None = None) -> tuple[str, dict[str, str]]:
    """The table URI and storage options ``deltalake`` needs for ``uri`` (the URI pyarrow reads the same files at).

    delta-rs does not take a pyarrow filesystem: it reads the same environment variables (``AWS_ENDPOINT_URL``,
    credentials...) but not pyarrow's URI query, so ``?endpoint_override=&scheme=&region=`` become options.
    On S3 a commit must be a conditional write (``If-None-Match``) to be atomic; that is asked for unless the
    deployment configured a locking provider itself (``AWS_S3_LOCKING_PROVIDER``). ``timeout_s`` bounds each
    object-store request (and its connect) as :func:`resolve`'s filesystems are bounded.
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
    if timeout_s is not None:
        options["timeout"] = f"{max(1, math.ceil(timeout_s))}s"
        options["connect_timeout"] = f"{max(1, math.ceil(min(_CONNECT_TIMEOUT_S, timeout_s)))}s"
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
