"""The figures of one replay: percentiles as numpy computes them, and the JSON the simulator prints."""

from __future__ import annotations

import pytest

from mlk8s.scaling import RunResult
from mlk8s.scaling.results import percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.95, 0.0),
        ([5.0], 0.95, 5.0),
        ([0.0, 10.0], 0.5, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 100.0], 0.95, 80.8),  # numpy.percentile(..., 95) == 80.8
        ([float(i) for i in range(101)], 0.95, 95.0),
    ],
)
def test_percentiles_interpolate_between_closest_ranks(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_the_json_rounds_each_figure_and_names_every_field() -> None:
    r = RunResult(1.23456, 0.5, 1.004, 20.456, 300.0, 7, 3600.04, 4)
    assert r.to_json() == {
        "worker_hours": 1.235,
        "gpu_worker_hours": 0.5,
        "queue_wait_s": {"p50": 1.0, "p95": 20.46, "max": 300.0},
        "scale_events": 7,
        "makespan_s": 3600.0,
        "peak_workers": 4,
    }
