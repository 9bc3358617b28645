"""The sample filter keeps rows by a hash of their id: the same rows every time, nested across fractions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from mlk8s.preprocessing.sampling import sample_rows

TABLE = pa.table({"id": [f"doc-{i}" for i in range(2000)], "text": ["x"] * 2000})


def kept(fraction: float, table: pa.Table = TABLE, **kw: object) -> set[str]:
    mask = sample_rows(table, fraction=fraction, **kw).to_pylist()  # type: ignore[arg-type]
    return {row for row, keep in zip(table.column("id").to_pylist(), mask) if keep}


def test_keeps_about_the_fraction_and_the_same_rows_however_the_input_is_cut() -> None:
    half = kept(0.5)
    assert 900 < len(half) < 1100
    pieces = kept(0.5, TABLE.slice(0, 700)) | kept(0.5, TABLE.slice(700))
    assert pieces == half


def test_a_larger_fraction_keeps_a_superset_and_the_seed_changes_the_sample() -> None:
    assert kept(0.2) <= kept(0.5) <= kept(1.0) == set(TABLE.column("id").to_pylist())
    assert kept(0.5, seed=1) != kept(0.5)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, True, "0.5"])
def test_bad_fractions_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="fraction must be a number in"):
        sample_rows(TABLE, fraction=bad)  # type: ignore[arg-type]


def test_a_missing_key_column_is_named() -> None:
    with pytest.raises(ValueError, match="no column 'doc_id'"):
        sample_rows(TABLE, fraction=0.5, column="doc_id")
