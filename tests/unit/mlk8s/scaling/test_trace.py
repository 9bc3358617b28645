"""Traces: the CSV format's refusals (line, field, fix), the check that a trace fits the groups, and the
benchmark traces, which are exactly what their seeded generator writes."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest

from mlk8s.scaling import TRACE_HEADER, Task, TraceError, WorkerGroupSpec, check_trace_fits, load_trace

BENCHMARKS = Path(__file__).resolve().parents[4] / "benchmarks"
ONE_CPU = [WorkerGroupSpec("cpu", 0, 1, cpus_per_worker=1)]


def write(tmp_path: Path, body: str, header: str = ",".join(TRACE_HEADER)) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + body)
    return path


@pytest.mark.parametrize(
    ("header", "body", "words"),
    [
        ("submit,duration_s,cpus,gpus", "0,1,1,0\n", ["header", "submit_s,duration_s,cpus,gpus"]),
        (None, "0,-3,1,0\n", ["line 2", "duration_s", ">= 0"]),
        (None, "0,0,1,0\n", ["line 2", "duration_s=0", "positive"]),
        (None, "0,5,one,0\n", ["line 2", "cpus", "not a number"]),
        (None, "0,5,1,0\n1,5,0,0\n", ["line 3", "cpus=0 and gpus=0"]),
        (None, "0,5,1\n", ["line 2", "4"]),
        (None, "0,5,inf,0\n", ["cpus", "finite"]),
        (None, "", ["no tasks"]),
    ],
)
def test_bad_traces_are_rejected_with_the_line_field_and_fix(
    tmp_path: Path, header: str | None, body: str, words: list[str]
) -> None:
    path = write(tmp_path, body, header or ",".join(TRACE_HEADER))
    with pytest.raises(TraceError) as err:
        load_trace(path)
    for word in words:
        assert word in str(err.value)


def test_a_missing_trace_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope.csv")


def test_a_task_no_group_can_run_is_rejected_before_simulating() -> None:
    with pytest.raises(TraceError, match="no GPU worker group"):
        check_trace_fits([Task(0, 5, 1, 1)], ONE_CPU)
    check_trace_fits([Task(0, 5, 1, 0)], ONE_CPU)


def test_committed_traces_match_the_seeded_generator(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("scaling_traces", BENCHMARKS / "scaling_traces.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.write(tmp_path)
    sizes = {"adhoc.csv": (100, 400), "business.csv": (2000, 10_000), "nightly.csv": (2000, 10_000)}
    sizes["steady.csv"] = (2000, 10_000)
    assert sorted(p.name for p in written) == sorted(sizes)
    for path in written:
        assert path.read_bytes() == (BENCHMARKS / "traces" / path.name).read_bytes(), path.name
        low, high = sizes[path.name]
        assert low <= len(load_trace(path)) <= high


def test_the_adhoc_trace_is_a_trickle_minutes_apart() -> None:
    """The low-rate trace: runs (their tasks land within seconds) a minute or more apart, never a burst."""
    tasks = load_trace(BENCHMARKS / "traces" / "adhoc.csv")
    runs = [tasks[0].submit_s]
    for t in tasks[1:]:
        if t.submit_s - runs[-1] > 10:
            runs.append(t.submit_s)
    assert min(b - a for a, b in itertools.pairwise(runs)) >= 60
    per_hour: dict[int, int] = {}
    for t in tasks:
        per_hour[int(t.submit_s // 3600)] = per_hour.get(int(t.submit_s // 3600), 0) + 1
    assert max(per_hour.values()) <= 40
