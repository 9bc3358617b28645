"""The benchmark traces are exactly what their seeded generator writes, and replayable."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mlk8s.scaling.simulate import load_trace

BENCHMARKS = Path(__file__).resolve().parents[4] / "benchmarks"


def test_committed_traces_match_the_seeded_generator(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("scaling_traces", BENCHMARKS / "scaling_traces.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.write(tmp_path)
    assert sorted(p.name for p in written) == ["business.csv", "nightly.csv", "steady.csv"]
    for path in written:
        assert path.read_bytes() == (BENCHMARKS / "traces" / path.name).read_bytes(), path.name
        tasks = load_trace(path)
        assert 2000 <= len(tasks) <= 10_000
