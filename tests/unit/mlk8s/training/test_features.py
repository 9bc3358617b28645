"""The feature cache: every bad row is named by file and 1-based row; what is read is hashed and memory-mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlk8s.training.data import open_source
from mlk8s.training.features import MAX_CLASSES, read_features
from mlk8s.training.task import TaskUsageError
from tests.unit.mlk8s.training.datasets import table, write_parquet


def features_of(tmp_path: Path, *tables: pa.Table, batch_rows: int = 4) -> Any:
    for i, t in enumerate(tables):
        write_parquet(tmp_path / "d" / f"part-{i}.parquet", t)
    return read_features(open_source(str(tmp_path / "d")), batch_rows=batch_rows)


def test_rows_land_in_order_in_a_read_only_memory_map(tmp_path: Path) -> None:
    a, b = table(10, seed=1), table(7, seed=2)
    f = features_of(tmp_path, a, b)
    expected = np.concatenate(
        [
            np.stack(a.column("embedding").to_numpy(zero_copy_only=False)),
            np.stack(b.column("embedding").to_numpy(zero_copy_only=False)),
        ]
    )
    assert isinstance(f.x, np.memmap) and f.x.dtype == np.float32 and not f.x.flags.writeable
    assert np.array_equal(f.x, expected) and f.rows == 17
    assert list(tmp_path.glob("**/mlk8s-features-*")) == []


def test_the_content_hash_follows_the_content(tmp_path: Path) -> None:
    one = features_of(tmp_path / "1", table(10, seed=1)).content_sha256
    assert features_of(tmp_path / "2", table(10, seed=1)).content_sha256 == one
    assert features_of(tmp_path / "3", table(10, seed=9)).content_sha256 != one
    assert features_of(tmp_path / "4", table(10, seed=1), batch_rows=3).content_sha256 == one
    halves = table(10, seed=1)
    assert features_of(tmp_path / "5", halves.slice(0, 4), halves.slice(4)).content_sha256 == one


def test_string_labels_become_sorted_class_ids(tmp_path: Path) -> None:
    t = table(6, labels=["pos", "neg", "pos", "mid", "neg", "pos"])
    f = features_of(tmp_path, t, batch_rows=2)
    assert f.class_names == ["mid", "neg", "pos"] and f.y.tolist() == [2, 1, 2, 0, 1, 2]


def _embedding(values: list[Any], type_: pa.DataType | None = None) -> pa.Table:
    array = pa.array(values, type=type_ or pa.list_(pa.float32()))
    return pa.table({"embedding": array, "label": list(range(len(values)))})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_embedding([[1.0, 2.0], None, [1.0, 2.0]]), r"part-1.parquet row 2: 'embedding' is null"),
        (_embedding([[1.0, 2.0], [1.0, 2.0], [1.0]]), r"part-1.parquet row 3: 'embedding' has 1 values"),
        (_embedding([[1.0, 2.0], [float("nan"), 0.0]]), r"part-1.parquet row 2: 'embedding' holds NaN"),
        (_embedding([[1.0, None]]), r"part-1.parquet row 1: 'embedding' holds a null value"),
        (_embedding([[1e300, 1.0]], pa.list_(pa.float64())), r"row 1: 'embedding' holds NaN or infinity"),
        (
            _embedding([["a", "b"]], pa.list_(pa.string())),
            r"part-1.parquet: column 'embedding' has type list<.*string>, expected list<float>",
        ),
        (
            pa.table({"embedding": [[1.0, 2.0]], "label": [10**9]}),
            rf"row 1: 'label' is 1000000000; class ids must be 0..{MAX_CLASSES - 1}",
        ),
        (pa.table({"embedding": [[1.0, 2.0]] * 2, "label": [0, -3]}), r"row 2: 'label' is -3"),
        (pa.table({"embedding": [[1.0, 2.0]] * 2, "label": pa.array([1, None])}), r"row 2: 'label' is null"),
        (pa.table({"embedding": [[1.0, 2.0]], "label": [0.5]}), r"column 'label' has type double"),
        (pa.table({"embedding": [[1.0, 2.0]], "label": ["x"]}), r"part-1.parquet: 'label' is string where earlier"),
        (pa.table({"vector": [[1.0, 2.0]], "label": [1]}), r"lacks column\(s\) embedding"),
    ],
)
def test_a_bad_row_is_named_by_file_and_row(tmp_path: Path, bad: pa.Table, message: str) -> None:
    good = table(5, dim=2)
    with pytest.raises(TaskUsageError, match=message) as exc:
        features_of(tmp_path, good, bad, batch_rows=2)
    assert exc.value.flag == "--data" and "\n" not in str(exc.value)


def test_an_empty_input_has_no_rows(tmp_path: Path) -> None:
    with pytest.raises(TaskUsageError, match="has no rows"):
        features_of(tmp_path, table(0))
