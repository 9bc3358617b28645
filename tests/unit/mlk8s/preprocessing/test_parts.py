"""Parts: unique names per attempt and task (never the content hash), page checksums, the cast to the table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlk8s.preprocessing.errors import InputError
from mlk8s.preprocessing.parts import PartWriter, content_hash, write_part
from tests.unit.mlk8s.preprocessing.outputs import rows


def test_identical_tables_get_two_names_and_one_hash(tmp_path: Path) -> None:
    first = write_part(rows(0, 3), str(tmp_path), "run_key=r1", "a1", 3)
    second = write_part(rows(0, 3), str(tmp_path), "run_key=r1", "a1", 3)
    assert first.path != second.path and first.sha256 == second.sha256
    assert first.path.startswith("run_key=r1/part-a1-") and first.path.endswith(".parquet")
    assert len(list((tmp_path / "run_key=r1").iterdir())) == 2
    assert content_hash([first, second]) == content_hash([second, first])


def test_parts_carry_page_checksums(tmp_path: Path) -> None:
    part = write_part(pa.table({"x": list(range(5000))}), str(tmp_path), "", "a1", 5000)
    path = tmp_path / part.path
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.ParquetFile(str(path), page_checksum_verification=True).read()


def test_the_writer_casts_to_the_table_and_names_the_file_on_a_bad_value(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path), "", "a1", pa.schema([("id", pa.string()), ("x", pa.int32())]))
    out = writer.write(pa.table({"x": [1, 2], "id": ["a", "b"], "extra": [0, 0]}), in_rows=3)
    described = out.to_pylist()[0]
    assert described["rows"] == 2 and described["input_rows"] == 3
    assert pq.read_schema(tmp_path / described["path"]).names == ["id", "x"]
    assert writer.write(pa.table({"id": pa.array([], pa.string())}), in_rows=4).to_pylist()[0]["path"] == ""
    with pytest.raises(InputError, match="--input: /in/b.jsonl: the pipeline's output does not convert"):
        writer.finish(pa.table({"id": ["a"], "x": ["not a number"]}), ["/in/b.jsonl"])
