"""The built-in task's training data: a float32 feature matrix (column ``embedding``) and integer class ids
(column ``label``), checked row by row and copied batch by batch into a memory-mapped local cache.

Why a memory-mapped cache: a step needs random rows (the data order is a permutation), which Parquet cannot
serve cheaply, while holding the whole table in memory makes a pod's memory grow with the dataset. Reading the
source once, in batches, into a file-backed matrix keeps the process's own (anonymous) memory flat: the pages
belong to the page cache, which the kernel evicts under pressure, and a batch gathers its rows from the map.
The cache files are unlinked as soon as they are mapped, so nothing is left behind, even after a SIGKILL.
What still grows with the row count is small: 8 bytes per row of labels (mapped too) and the index arrays
of the split and of the epoch's permutation.

Every bad row is reported with its file and 1-based row number, before any training starts. The content hash
covers exactly what training sees (the float32 features and the labels), so a relaunch can tell whether the
data it is about to train on is the data its checkpoint was trained on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlk8s.training.task import TaskUsageError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from mlk8s.training.data import DataFile, DataSource

EMBEDDING_COLUMN = "embedding"
LABEL_COLUMN = "label"
#: A classifier head has one output per class: ids beyond this are almost surely not class ids (a label of 1e9
#: would ask for a 1e9-unit output layer).
MAX_CLASSES = 100_000
BATCH_ROWS = 8192


@dataclass
class Features:
    x: np.ndarray  # (rows, dim) float32; a read-only memory map for Parquet inputs
    y: np.ndarray  # (rows,) int64 class ids
    class_names: list[str] | None
    content_sha256: str

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


def _where(data_file: DataFile, row: int) -> str:
    return f"{data_file.loc.uri} row {row + 1}"


def _check_schema(data_file: DataFile, schema: pa.Schema) -> str:
    """The label kind ("int" or "string") of one file; raises naming the file for any other column shape."""
    import pyarrow as pa

    missing = [c for c in (EMBEDDING_COLUMN, LABEL_COLUMN) if c not in schema.names]
    if missing:
        raise TaskUsageError(
            "--data",
            f"{data_file.loc.uri} lacks column(s) {', '.join(missing)} (has {', '.join(schema.names)}); the built-in "
            f"task needs a list<float> column {EMBEDDING_COLUMN!r} and an int or string column {LABEL_COLUMN!r}",
        )
    emb = schema.field(EMBEDDING_COLUMN).type
    is_list = pa.types.is_list(emb) or pa.types.is_large_list(emb) or pa.types.is_fixed_size_list(emb)
    if not is_list or not (pa.types.is_floating(emb.value_type) or pa.types.is_integer(emb.value_type)):
        raise TaskUsageError(
            "--data", f"{data_file.loc.uri}: column {EMBEDDING_COLUMN!r} has type {emb}, expected list<float>"
        )
    label = schema.field(LABEL_COLUMN).type
    if pa.types.is_dictionary(label):
        label = label.value_type
    if pa.types.is_integer(label):
        return "int"
    if pa.types.is_string(label) or pa.types.is_large_string(label):
        return "string"
    raise TaskUsageError(
        "--data", f"{data_file.loc.uri}: column {LABEL_COLUMN!r} has type {label}, expected int or string"
    )


def _first(mask: np.ndarray) -> int:
    import numpy as np

    return int(np.flatnonzero(mask)[0])


def _embeddings(data_file: DataFile, first: int, column: Any, dim: int | None) -> np.ndarray:
    """The batch's vectors as float32 (n, dim); raises naming the first bad row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count:
        row = _first(column.is_null().to_numpy(zero_copy_only=False))
        raise TaskUsageError("--data", f"{_where(data_file, first + row)}: {EMBEDDING_COLUMN!r} is null")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    want = dim if dim is not None else (int(lengths[0]) if len(lengths) else 0)
    bad = lengths != want
    if want == 0 or bad.any():
        row = _first(bad) if bad.any() else 0
        raise TaskUsageError(
            "--data",
            f"{_where(data_file, first + row)}: {EMBEDDING_COLUMN!r} has {int(lengths[row])} values where every "
            f"vector must have the same non-zero length ({want or 'the first row has none'})",
        )
    values = column.flatten()
    if values.null_count:
        row = _first(values.is_null().to_numpy(zero_copy_only=False).reshape(-1, want).any(axis=1))
        raise TaskUsageError("--data", f"{_where(data_file, first + row)}: {EMBEDDING_COLUMN!r} holds a null value")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused just below
        matrix: np.ndarray = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = matrix.reshape(len(column), want)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = _first(~finite)
        raise TaskUsageError(
            "--data",
            f"{_where(data_file, first + row)}: {EMBEDDING_COLUMN!r} holds NaN or infinity (or a value "
            "too large for float32)",
        )
    return matrix


def _int_labels(data_file: DataFile, first: int, column: Any) -> np.ndarray:
    import numpy as np
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if column.null_count:
        row = _first(column.is_null().to_numpy(zero_copy_only=False))
        raise TaskUsageError("--data", f"{_where(data_file, first + row)}: {LABEL_COLUMN!r} is null")
    labels: np.ndarray = column.to_numpy().astype(np.int64)
    bad = (labels < 0) | (labels >= MAX_CLASSES)
    if bad.any():
        row = _first(bad)
        raise TaskUsageError(
            "--data",
            f"{_where(data_file, first + row)}: {LABEL_COLUMN!r} is {int(column[row].as_py())}; class ids must be "
            f"0..{MAX_CLASSES - 1} (map labels to dense ids, or use string labels)",
        )
    return labels


def _string_labels(data_file: DataFile, first: int, column: Any, ids: dict[str, int]) -> np.ndarray:
    """Provisional ids in order of first appearance (``ids`` grows); renumbered by sorted name at the end."""
    import numpy as np
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if column.null_count:
        row = _first(column.is_null().to_numpy(zero_copy_only=False))
        raise TaskUsageError("--data", f"{_where(data_file, first + row)}: {LABEL_COLUMN!r} is null")
    out = np.empty(len(column), dtype=np.int64)
    for i, value in enumerate(column.to_pylist()):
        out[i] = ids.setdefault(value, len(ids))
        if len(ids) > MAX_CLASSES:
            raise TaskUsageError(
                "--data",
                f"{_where(data_file, first + i)}: more than {MAX_CLASSES} distinct labels; is {LABEL_COLUMN!r} "
                "really a class?",
            )
    return out


def _cache(shape: tuple[int, ...], dtype: Any, cache_dir: str | None) -> np.ndarray:
    """A writable memory map of ``shape``, backed by an already unlinked file."""
    import numpy as np

    fd, path = tempfile.mkstemp(prefix="mlk8s-features-", suffix=".bin", dir=cache_dir)
    try:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        os.ftruncate(fd, max(size, 1))
        return np.memmap(path, dtype=dtype, mode="r+", shape=shape)
    finally:
        os.close(fd)
        os.unlink(path)


def read_features(source: DataSource, *, cache_dir: str | None = None, batch_rows: int = BATCH_ROWS) -> Features:
    """Read ``source`` into a memory-mapped feature matrix and labels; every problem names file and row."""
    import numpy as np
    import pyarrow.parquet as pq

    kinds = {}
    for data_file in source.files:
        with data_file.loc.fs.open_input_file(data_file.loc.path) as handle:
            kinds[data_file.loc.uri] = _check_schema(data_file, pq.ParquetFile(handle).schema_arrow)
    if len(set(kinds.values())) > 1:
        odd = next(uri for uri, kind in kinds.items() if kind != next(iter(kinds.values())))
        raise TaskUsageError("--data", f"{odd}: {LABEL_COLUMN!r} is {kinds[odd]} where earlier files hold another type")
    if source.rows == 0:
        raise TaskUsageError("--data", f"{source.uri} has no rows")
    string_labels = next(iter(kinds.values())) == "string"
    # Features and labels hashed apart, so the hash does not depend on how the rows are cut into files or batches.
    digest, label_digest = hashlib.sha256(), hashlib.sha256()
    ids: dict[str, int] = {}
    x: np.ndarray | None = None
    y = _cache((source.rows,), np.int64, cache_dir)
    at = 0
    for data_file, first, batch in source.batches([EMBEDDING_COLUMN, LABEL_COLUMN], batch_rows):
        matrix = _embeddings(data_file, first, batch.column(EMBEDDING_COLUMN), None if x is None else x.shape[1])
        column = batch.column(LABEL_COLUMN)
        labels = (
            _string_labels(data_file, first, column, ids) if string_labels else _int_labels(data_file, first, column)
        )
        if x is None:
            x = _cache((source.rows, matrix.shape[1]), np.float32, cache_dir)
        x[at : at + len(matrix)] = matrix
        y[at : at + len(labels)] = labels
        digest.update(np.ascontiguousarray(matrix).data)
        label_digest.update(labels.data)
        at += len(matrix)
    if x is None or at != source.rows:
        raise TaskUsageError("--data", f"{source.uri} changed while it was read ({at} of {source.rows} rows)")
    names = None
    if string_labels:
        label_digest.update("\0".join(ids).encode())
        names = sorted(ids)
        renumber = np.empty(len(ids), dtype=np.int64)
        renumber[[ids[n] for n in names]] = np.arange(len(names))
        for start in range(0, len(y), 1 << 20):
            y[start : start + (1 << 20)] = renumber[y[start : start + (1 << 20)]]
    x.flags.writeable = False
    y.flags.writeable = False
    digest.update(label_digest.digest())
    return Features(x, y, names, digest.hexdigest())


def in_memory_features(x: np.ndarray, y: np.ndarray) -> Features:
    """Features of a small in-memory dataset (the bundled digits), hashed the same way."""
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    digest = hashlib.sha256(x.data)
    digest.update(hashlib.sha256(y.data).digest())
    return Features(x, y, None, digest.hexdigest())
