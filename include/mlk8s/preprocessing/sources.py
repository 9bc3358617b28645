"""Where documents come from: a local path or a pyarrow.fs URI holding Parquet, JSON lines or raw files.

This module lists the input (:func:`open_input`); :mod:`.work_units` cuts it into pieces and :mod:`.readers`
reads them.

The input is listed and its format decided once, up front, so a missing or unreadable input is a usage
error before any Ray work starts, and the Ray pipeline and the single-process reference read exactly the
same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.preprocessing.errors import InputError
from mlk8s.storage import UriError, resolve

FORMATS: dict[str, tuple[str, ...]] = {
    "parquet": (".parquet", ".pq"),
    "jsonl": (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".json.gz"),
    "raw": (".txt", ".text", ".md", ".html", ".htm", ".xhtml"),
}
FORMAT_CHOICES = ("auto", *FORMATS)


@dataclass(frozen=True)
class InputSource:
    uri: str
    filesystem: pafs.FileSystem
    root: str
    files: tuple[str, ...]
    format: str
    total_bytes: int

    def describe(self) -> str:
        return f"{len(self.files)} {self.format} file(s), {self.total_bytes} bytes under {self.uri}"


def resolve_filesystem(uri: str, flag: str = "--input") -> tuple[pafs.FileSystem, str]:
    """A filesystem and the path inside it (see :mod:`mlk8s.storage`), or :class:`InputError` naming ``flag``."""
    try:
        location = resolve(uri)
    except UriError as exc:
        raise InputError(f"{flag}: {exc}") from None
    return location.fs, location.path


def _format_of(path: str) -> str | None:
    lower = path.lower()
    for name, suffixes in FORMATS.items():
        if lower.endswith(suffixes):
            return name
    return None


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def open_input(uri: str, input_format: str = "auto") -> InputSource:
    """List the input's files and decide their format, or raise :class:`InputError`."""
    if input_format not in FORMAT_CHOICES:
        raise InputError(f"--input-format: {input_format!r} is not one of {', '.join(FORMAT_CHOICES)}")
    fs, root = resolve_filesystem(uri)
    try:
        info = fs.get_file_info(root)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"--input: cannot read {uri!r} ({exc}); check the URI and the credentials") from None
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"--input: {uri!r} does not exist; pass an existing file or directory")
    if info.type == pafs.FileType.Directory:
        from mlk8s.preprocessing.output import read_manifest

        manifest = read_manifest(uri)
        if manifest is not None:
            # The committed output of an earlier preprocessing run: read exactly what its manifest names.
            files = tuple(f"{root.rstrip('/')}/{part['path']}" for part in manifest["files"])
            sizes = sum(int(part["bytes"]) for part in manifest["files"])
            return InputSource(uri, fs, root, files, "parquet", sizes)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        candidates = [i for i in infos if i.type == pafs.FileType.File and not _hidden(i.path[len(root) :].lstrip("/"))]
        prefix = root
    else:
        candidates = [info]
        prefix = os.path.dirname(root)
    if input_format == "auto":
        found = {_format_of(i.path) for i in candidates}
        known = found - {None}
        if not candidates:
            raise InputError(f"--input: {uri!r} holds no files (names starting with '_' or '.' are ignored)")
        if len(known) > 1:
            raise InputError(
                f"--input: {uri!r} mixes formats {sorted(k for k in known if k)}; point --input at one kind of "
                "file, or pass --input-format to pick one"
            )
        if not known:
            extensions = ", ".join(s for group in FORMATS.values() for s in group)
            raise InputError(
                f"--input: no file under {uri!r} has a known extension ({extensions}); pass --input-format"
            )
        fmt = known.pop()
        assert fmt is not None
        chosen = [i for i in candidates if _format_of(i.path) == fmt]
    else:
        fmt = input_format
        chosen = [i for i in candidates if _format_of(i.path) in (fmt, None)]
        if not chosen:
            raise InputError(f"--input: no {fmt} files under {uri!r}")
    chosen.sort(key=lambda i: i.path)
    return InputSource(uri, fs, prefix, tuple(i.path for i in chosen), fmt, sum(max(i.size or 0, 0) for i in chosen))
