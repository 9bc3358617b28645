"""The Ray pool page: queue vs pool size as steps, one decision row per change, the sensor's errors, and why
there is nothing to show when there is nothing (the page against a real sensor's XComs is in test_app.py)."""

from __future__ import annotations

import html
import re

import pytest

from mlk8s_airflow.ui.ray_pool_page import decision_rows, pool_chart, render_ray_pool_page, why_nothing
from mlk8s_airflow.ui.task_state import SensorStatus, TaskInstanceInfo
from mlk8s_airflow.ui.xcom_shapes import PoolPoint, SensorError
from tests.unit.mlk8s_airflow.ui.charts import chart, markers, polyline

HISTORY = [
    {"t": 0.0, "queued": 4, "running": 0, "pool": 0, "target": 2, "reason": "scale up 0 -> 2"},
    {"t": 30.0, "queued": 0, "running": 2, "pool": 2, "target": 2, "reason": "hold 2"},
    {"t": 45.0, "queued": 0, "running": 2, "pool": 2, "target": 2, "reason": "hold 2"},
    {"t": 60.0, "queued": 0, "running": 0, "pool": 2, "target": 0, "reason": "scale down <idle>"},
]
POINTS = [PoolPoint(**p) for p in HISTORY]


def status(
    state: str | None = "deferred", *, paused: bool = False, exists: bool = True, run: bool = True
) -> SensorStatus:
    sensor = TaskInstanceInfo("ray_pool_autoscaler", "r1", "size_ray_pool", state=state, try_number=2) if run else None
    return SensorStatus("ray_pool_autoscaler", "size_ray_pool", dag_exists=exists, is_paused=paused, sensor=sensor)


def test_pool_size_is_drawn_as_steps_that_rise_when_work_queues() -> None:
    svg = pool_chart(POINTS)
    pool = polyline(svg, "pool")
    assert len(pool) == 2 * len(HISTORY) - 1  # a step per point
    assert pool[0][1] > pool[-1][1]  # 0 workers at first (low on screen), 2 at the end
    queued = polyline(svg, "queued")
    assert queued[0][1] < queued[-1][1]  # the backlog drains
    assert len(polyline(svg, "target")) == len(pool) and len(polyline(svg, "running")) == len(pool)


def test_decisions_are_one_row_per_change_newest_first() -> None:
    rows = decision_rows(POINTS)
    assert [r[0][-8:] for r in rows] == ["00:01:00", "00:00:45", "00:00:00"]


def test_errors_are_shown_at_the_top_in_the_chart_and_in_a_table() -> None:
    errors = [{"t": 40.0, "message": "GCS at 127.0.0.1:6379 unreachable"}, {"t": 50.0, "message": "again <x>"}]
    page = render_ray_pool_page(status("up_for_retry"), "r1", HISTORY, errors)
    top = page.index('class="notice error"')
    assert top < page.index("<svg") and "again &lt;x&gt;" in page[top : page.index("<svg")]
    assert markers(chart(page, "ray-pool"), "error") == [40.0, 50.0]
    assert re.findall(r'<table class="errors">.*?</table>', page, re.S)[0].count("<tr>") == 3  # header + 2


def test_reasons_are_escaped() -> None:
    page = render_ray_pool_page(status(), "r1", HISTORY, None)
    assert "scale down &lt;idle&gt;" in page and "<idle>" not in page


@pytest.mark.parametrize(
    ("sensor", "expected"),
    [
        (status(exists=False, run=False), "There is no DAG 'ray_pool_autoscaler'"),
        (status(paused=True, run=False), "is paused: unpause it"),
        (status(run=False), "has no run yet: trigger it"),
        (status("queued"), "is queued: waiting for a worker slot"),
        (status("failed"), "is failed (try 2) and recorded no error: its task log says why"),
        (status("deferred"), "its first cycle is not stored yet"),
    ],
)
def test_an_empty_page_says_why_it_is_empty(sensor: SensorStatus, expected: str) -> None:
    hint = why_nothing(sensor, [])
    assert hint is not None and html.escape(expected) in hint
    assert html.escape(expected) in render_ray_pool_page(sensor, None, None, None)


def test_a_failed_sensor_with_errors_shows_the_errors_not_the_log_hint() -> None:
    errors = [SensorError(t=1.0, message="boom")]
    assert why_nothing(status("failed"), errors) is None
    page = render_ray_pool_page(status("failed"), "r1", [], [{"t": 1.0, "message": "boom"}])
    assert "boom" in page and "recorded no error" not in page


def test_a_history_of_the_wrong_shape_is_named_and_the_rest_still_drawn() -> None:
    page = render_ray_pool_page(status(), "r1", [*HISTORY, {"queued": 1}], None)
    assert "ray_pool_history[4] t: Field required" in page
    assert len(polyline(chart(page, "ray-pool"), "pool")) == 2 * len(HISTORY) - 1


def test_the_page_reloads_while_the_sensor_runs_and_not_after() -> None:
    assert 'http-equiv="refresh"' in render_ray_pool_page(status("deferred"), "r1", HISTORY, None)
    assert 'http-equiv="refresh"' not in render_ray_pool_page(status("success"), "r1", HISTORY, None)
