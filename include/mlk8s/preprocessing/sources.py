"""Where documents come from: a local path or a pyarrow.fs URI holding Parquet, JSON lines or raw files.

This module lists the input (:func:`open_input`); :mod:`.work_units` cuts it into pieces and :mod:`.readers`
reads them.

The input is listed and its format decided once, up front, so a missing or unreadable input is a usage
error before any Ray work starts, and the Ray pipeline and the single-process reference read exactly the
same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

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
    #: Constant columns per file: the partition values of a committed Delta table's files.
    file_columns: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)

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
        committed = _committed_input(uri, fs, root)
        if committed is not None:
            return committed
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        candidates = [i for i in infos if i.type == pafs.FileType.File and not _hidden(i.path[len(root) :].lstrip("/"))]
        prefix = root
    else:
        candidates = [info]
        prefix = os.path.dirname(root)
    fmt, chosen = _choose(uri, candidates, input_format)
    empty = [i.path for i in chosen if not i.size and fmt != "raw"]
    if empty:
        raise InputError(
            f"--input: {empty[0]} is empty (0 bytes){f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''}; "
            f"an empty file is not a valid {fmt} file: remove it or write it again"
        )
    chosen.sort(key=lambda i: i.path)
    return InputSource(uri, fs, prefix, tuple(i.path for i in chosen), fmt, sum(max(i.size or 0, 0) for i in chosen))


def _choose(uri: str, candidates: list[pafs.FileInfo], input_format: str) -> tuple[str, list[pafs.FileInfo]]:
    """The format and the files of it among ``candidates``."""
    if input_format != "auto":
        chosen = [i for i in candidates if _format_of(i.path) in (input_format, None)]
        if not chosen:
            raise InputError(f"--input: no {input_format} files under {uri!r}")
        return input_format, chosen
    if not candidates:
        raise InputError(f"--input: {uri!r} holds no files (names starting with '_' or '.' are ignored)")
    known = sorted({f for f in (_format_of(i.path) for i in candidates) if f is not None})
    if len(known) > 1:
        raise InputError(
            f"--input: {uri!r} mixes formats {known}; point --input at one kind of file, or pass --input-format "
            "to pick one"
        )
    if not known:
        extensions = ", ".join(s for group in FORMATS.values() for s in group)
        raise InputError(f"--input: no file under {uri!r} has a known extension ({extensions}); pass --input-format")
    return known[0], [i for i in candidates if _format_of(i.path) == known[0]]


def _committed_input(uri: str, fs: pafs.FileSystem, root: str) -> InputSource | None:
    """The committed output of an earlier preprocessing run (a Delta table, or the old manifest layout): read
    exactly the files its current version commits, with their partition values as columns."""
    from mlk8s.preprocessing.errors import CommitError, CorruptOutputError
    from mlk8s.preprocessing.output import open_output

    try:
        output = open_output(uri)
    except (CommitError, CorruptOutputError, OSError, ValueError) as exc:
        raise InputError(f"--input: {uri!r} holds a committed output that cannot be read ({exc})") from None
    if output is None:
        return None
    files = tuple(output.path(f) for f in output.files)
    columns = {output.path(f): f.partition for f in output.files if f.partition}
    return InputSource(uri, fs, root, files, "parquet", sum(f.size for f in output.files), columns)


def schema_conflicts(source: InputSource, declared: pa.Schema | None, extra: str) -> None:
    """Refuse Parquet files whose schemas differ, naming two of them, unless the declared schema converts the
    differing columns (they are declared, or undeclared columns are dropped)."""
    import pyarrow.parquet as pq

    if source.format != "parquet" or len(source.files) < 2:
        return
    first_path, first = source.files[0], None
    for path in source.files:
        try:
            with source.filesystem.open_input_file(path) as fh:
                schema = pq.read_schema(fh)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"--input: {path} is not a readable Parquet file ({exc})") from None
        if first is None:
            first = schema
            continue
        differ = sorted(
            {f.name for f in schema if f.name not in first.names or not first.field(f.name).type.equals(f.type)}
            | {f.name for f in first if f.name not in schema.names}
        )
        converted = declared is not None and (extra == "drop" or set(differ) <= set(declared.names))
        if differ and not converted:
            mine = {n: str(schema.field(n).type) if n in schema.names else "missing" for n in differ}
            theirs = {n: str(first.field(n).type) if n in first.names else "missing" for n in differ}
            raise InputError(
                f"--input: {first_path} and {path} have different schemas ({theirs} vs {mine}); make the files "
                "agree, or declare these columns in the spec's schema.fields so every file is converted to them"
            )
