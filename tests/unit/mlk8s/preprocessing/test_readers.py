"""Reading records: JSON lines byte ranges hold every line once and parse with one schema per file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from mlk8s.preprocessing.sources import open_input


@pytest.mark.parametrize("cut", [1, 7, 100, 1000, 10**6])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_byte_ranges_of_a_jsonl_file_hold_every_line_exactly_once(
    tmp_path: Path, cut: int, trailing_newline: bool
) -> None:
    """Cut anywhere (mid-line, on a newline, inside a line longer than the range): each line once, in order."""
    import pyarrow.fs as pafs

    from mlk8s.preprocessing.readers import _read_line_range

    lines = [b'{"i": %d, "t": "%s"}' % (i, b"x" * (i * 37 % 500)) for i in range(40)]
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)
    ranges = [
        _read_line_range(pafs.LocalFileSystem(), str(path), s, min(s + cut, len(data)))[1]
        for s in range(0, len(data), cut)
    ]
    assert b"".join(ranges) == data
    assert all(r == b"" or r.startswith(b"{") for r in ranges)


def test_a_large_jsonl_file_is_read_by_ranges_with_one_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges parse with the types inferred from the file's first range (a number stays double everywhere)."""
    from mlk8s.preprocessing import readers, work_units

    monkeypatch.setattr(work_units, "JSONL_UNIT_BYTES", 64)
    rows = [{"id": f"r{i}", "score": 1.5 if i == 0 else i, "html": None} for i in range(30)]
    path = tmp_path / "f.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = open_input(str(path))
    units = work_units.work_units(source)
    assert len(units) > 10 and all("range" in u for u in units)
    tables = [t for t in (readers.read_unit(source, u) for u in units) if t.num_rows]
    assert {t.schema.field("score").type for t in tables} == {pa.float64()}
    assert sorted(r["id"] for t in tables for r in t.to_pylist()) == sorted(r["id"] for r in rows)
