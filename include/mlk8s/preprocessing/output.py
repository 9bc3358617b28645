"""Reading a committed preprocessing output: through its manifest, never by listing the directory.

The commit (:mod:`.commit`) writes the layout; the input lister (:mod:`.sources`) and downstream jobs read
it here.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from mlk8s.preprocessing.errors import CommitError
from mlk8s.storage import resolve

MANIFEST = "_manifest.json"
ATTEMPTS = "_attempts"
MANIFEST_FORMAT = "mlk8s.preprocessing/v1"


def fs_and_root(uri: str) -> tuple[pafs.FileSystem, str]:
    location = resolve(uri)
    return location.fs, location.path.rstrip("/")


def join_uri(uri: str, relative: str) -> str:
    return uri.rstrip("/") + "/" + relative


def read_manifest(output_uri: str) -> dict[str, Any] | None:
    """The committed manifest, or ``None`` when nothing was ever committed there."""
    fs, root = fs_and_root(output_uri)
    path = f"{root}/{MANIFEST}"
    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as fh:
            manifest: dict[str, Any] = json.loads(bytes(fh.read()))
    except (OSError, pa.ArrowException, json.JSONDecodeError) as exc:
        raise CommitError(f"cannot read the manifest at {join_uri(output_uri, MANIFEST)} ({exc})") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CommitError(f"{join_uri(output_uri, MANIFEST)} is not an mlk8s preprocessing manifest")
    return manifest


def committed_files(output_uri: str) -> list[str]:
    """URIs of the committed Parquet files (empty when nothing is committed)."""
    manifest = read_manifest(output_uri)
    return [] if manifest is None else [join_uri(output_uri, p["path"]) for p in manifest["files"]]


def read_output(output_uri: str, columns: list[str] | None = None) -> pa.Table:
    """The committed output as one table, read through the manifest."""
    import pyarrow.parquet as pq

    manifest = read_manifest(output_uri)
    if manifest is None:
        raise FileNotFoundError(f"no committed output at {output_uri} (no {MANIFEST})")
    fs, root = fs_and_root(output_uri)
    tables = [pq.read_table(f"{root}/{p['path']}", filesystem=fs, columns=columns) for p in manifest["files"]]
    if not tables:
        return pa.schema([pa.field(n, pa.null()) for n in columns or []]).empty_table()
    return pa.concat_tables(tables, promote_options="permissive")
