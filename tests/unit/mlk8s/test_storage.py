"""Storage: URIs become filesystems with bounded timeouts; object-store waits end with a named error or a stop."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import fsspec
import pyarrow.fs as pafs
import pytest

from mlk8s.storage import (
    TIMEOUT_ENV,
    Location,
    StorageInterrupted,
    StorageTimeout,
    UriError,
    abandoned_calls,
    call,
    default_timeout_s,
    resolve,
    write_atomic,
)


def test_plain_relative_path_becomes_absolute_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loc = resolve("ckpts/run1")
    assert isinstance(loc.fs, pafs.LocalFileSystem)
    assert loc.path == str(tmp_path / "ckpts" / "run1")
    assert loc.child("x").uri == str(tmp_path / "ckpts" / "run1" / "x")


def test_file_uri_and_object_store_uris_resolve(tmp_path: Path) -> None:
    loc = resolve(f"file://{tmp_path}/a/")
    assert isinstance(loc.fs, pafs.LocalFileSystem) and loc.path == f"{tmp_path}/a"
    assert loc.uri == f"file://{tmp_path}/a"
    s3 = resolve("s3://bucket/prefix/run?region=us-east-1&endpoint_override=localhost:1")
    assert type(s3.fs).__name__ == "S3FileSystem" and s3.path == "bucket/prefix/run"
    gs = resolve("gs://bucket/prefix")
    assert type(gs.fs).__name__ == "GcsFileSystem" and gs.path == "bucket/prefix"
    assert not s3.is_local


@pytest.mark.parametrize("bad", ["", "   ", "nosuchscheme://x/y"])
def test_bad_uri_is_refused(bad: str) -> None:
    with pytest.raises(UriError):
        resolve(bad)


def test_object_store_filesystems_get_timeouts_unless_the_uri_sets_them() -> None:
    s3 = resolve("s3://bucket/p?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http", timeout_s=7)
    kwargs = s3.fs.__reduce__()[1][0]
    assert (kwargs["connect_timeout"], kwargs["request_timeout"]) == (7, 7)
    assert kwargs["endpoint_override"] == "127.0.0.1:9" and kwargs["region"] == "us-east-1"
    assert s3.child("x").timeout_s == 7
    gs = resolve("gs://bucket/p", timeout_s=9)
    assert gs.fs.__reduce__()[1][0]["retry_time_limit"] == timedelta(seconds=9)
    own = resolve("gs://bucket/p?retry_limit_seconds=3", timeout_s=9)
    assert own.fs.__reduce__()[1][0]["retry_time_limit"] == timedelta(seconds=3)


def test_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "12.5")
    assert default_timeout_s() == 12.5 and resolve("gs://b/p").timeout_s == 12.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(UriError, match=TIMEOUT_ENV):
            default_timeout_s()


def _remote(timeout_s: float) -> Location:
    return Location(pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory"))), "/x", "mem://x", timeout_s)


def test_a_hung_object_store_call_ends_with_an_error_naming_what_was_waited_for() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(StorageTimeout, match=r"listing s3://b/ckpt did not finish within 0.3 s"):
        call(_remote(0.3), "listing s3://b/ckpt", release.wait, 30)
    assert time.monotonic() - started < 5
    assert "listing s3://b/ckpt" in abandoned_calls()  # the CLI leaves with os._exit when there is one
    release.set()


def test_a_stop_request_interrupts_the_wait() -> None:
    release = threading.Event()
    stop_at = time.monotonic() + 0.2
    with pytest.raises(StorageInterrupted, match="reading gs://b/c"):
        call(_remote(60), "reading gs://b/c", release.wait, 30, cancelled=lambda: time.monotonic() > stop_at)
    release.set()


def test_results_and_errors_of_object_store_calls_come_back() -> None:
    assert call(_remote(5), "adding", lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(KeyError):
        call(_remote(5), "failing", {}.__getitem__, "missing")


def test_local_calls_run_directly(tmp_path: Path) -> None:
    loc = resolve(str(tmp_path / "f"))
    assert call(loc, "naming", threading.current_thread) is threading.current_thread()


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    loc = resolve(str(tmp_path / "f.json"))
    write_atomic(loc, b"old")
    write_atomic(loc, memoryview(b"new"))
    assert (tmp_path / "f.json").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
