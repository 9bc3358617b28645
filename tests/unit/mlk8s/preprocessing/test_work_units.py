"""Cutting the input into work units and grouping them into tasks: every record read exactly once."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlk8s.preprocessing.readers import iter_tables
from mlk8s.preprocessing.samples import documents, write_documents
from mlk8s.preprocessing.sources import open_input


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "raw"])
def test_work_units_cover_the_input_exactly_once(tmp_path: Path, fmt: str) -> None:
    """What the Ray tasks read (unit by unit) is what the single-process reader reads."""
    from mlk8s.preprocessing import readers, work_units

    root = tmp_path / "in"
    root.mkdir()
    if fmt == "parquet":
        for i in range(3):
            pq.write_table(documents(50, seed=i), root / f"{i}.parquet", row_group_size=16)
    elif fmt == "jsonl":
        for i in range(3):
            write_documents(root / f"{i}.jsonl", rows=20, seed=i)
    else:
        for i in range(7):
            (root / f"doc{i}.{'html' if i % 2 else 'txt'}").write_text(f"<p>document {i}</p>")
    source = open_input(str(root))
    units = work_units.work_units(source)
    if fmt == "parquet":
        assert len(units) == 3 * 4  # 50 rows in row groups of 16
    by_unit = pa.concat_tables([readers.read_unit(source, u) for u in units], promote_options="permissive")
    whole = pa.concat_tables(list(iter_tables(source)), promote_options="permissive")
    key = "id"
    assert sorted(by_unit.to_pylist(), key=lambda r: r[key]) == sorted(whole.to_pylist(), key=lambda r: r[key])


def _units(sizes: list[int]) -> list[dict[str, object]]:
    return [{"paths": [f"f{i}.parquet"], "row_group": 0, "bytes": size} for i, size in enumerate(sizes)]


def test_plan_tasks_groups_consecutive_units_into_about_equal_tasks() -> None:
    """64 row groups on 2 CPUs become 16 tasks of 4 (8 tasks per CPU), in input order, none lost."""
    from mlk8s.preprocessing.work_units import TASKS_PER_CPU, plan_tasks

    assert TASKS_PER_CPU == 8
    units = _units([16] * 64)
    tasks = plan_tasks(units, cpus=2)
    assert [len(t) for t in tasks] == [4] * 16
    assert [u for t in tasks for u in t] == units
    assert [len(t) for t in plan_tasks(units, cpus=2, tasks_per_cpu=2)] == [16] * 4


def test_plan_tasks_caps_the_bytes_a_task_reads() -> None:
    from mlk8s.preprocessing.work_units import plan_tasks

    tasks = plan_tasks(_units([10] * 100), cpus=1, max_task_bytes=30)
    assert len(tasks) == 34  # 3 units (30 bytes) per task, the last one short
    assert all(sum(int(u["bytes"]) for u in t) <= 30 for t in tasks)  # type: ignore[call-overload]


def test_plan_tasks_keeps_a_unit_larger_than_the_target_whole_and_alone() -> None:
    from mlk8s.preprocessing.work_units import plan_tasks

    tasks = plan_tasks(_units([1, 1, 500, 1, 1]), cpus=4)
    assert [[int(u["bytes"]) for u in t] for t in tasks] == [[1, 1], [500], [1, 1]]  # type: ignore[call-overload]


def test_plan_tasks_small_inputs_and_unknown_sizes() -> None:
    """Fewer units than wanted: one task each. Sizes unknown (all 0): grouped by count instead."""
    from mlk8s.preprocessing.work_units import plan_tasks

    assert plan_tasks([], cpus=2) == []
    assert [len(t) for t in plan_tasks(_units([5, 5, 5]), cpus=8)] == [1, 1, 1]
    assert [len(t) for t in plan_tasks(_units([0] * 10), cpus=1, tasks_per_cpu=4)] == [3, 3, 3, 1]


def test_a_gzipped_jsonl_file_is_one_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from mlk8s.preprocessing import work_units

    monkeypatch.setattr(work_units, "JSONL_UNIT_BYTES", 64)
    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(b'{"id": "r%d"}\n' % i for i in range(200))))
    units = work_units.work_units(open_input(str(path)))
    assert len(units) == 1 and "range" not in units[0]
