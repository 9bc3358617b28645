"""The preprocessing page: rows in, out and filtered, the rate, and the Ray pool around the task's run."""

from __future__ import annotations

from mlk8s_airflow.ui.preprocessing_page import pool_window, render_preprocessing_page
from mlk8s_airflow.ui.task_state import TaskInstanceInfo
from mlk8s_airflow.ui.xcom_shapes import PoolPoint
from tests.unit.mlk8s_airflow.ui.charts import chart, markers, polyline

TI = TaskInstanceInfo("prep", "r1", "features", state="success", try_number=1, start=1000.0, end=1100.0)
RESULT = {"output_uri": "/out", "input_rows": 5000, "output_rows": 4900, "filtered_rows": 100, "duration_s": 20.0}
POINTS = [
    PoolPoint(t=t, queued=q, pool=p, target=p)
    for t, q, p in [(500.0, 0, 0), (950.0, 1, 0), (1010.0, 0, 2), (1500.0, 0, 0)]
]


def test_the_figures_and_the_rate() -> None:
    page = render_preprocessing_page(TI, RESULT, [], "ray_pool_autoscaler", now=2000.0)
    for key, value in [
        ("input rows", "5000"),
        ("output rows", "4900"),
        ("filtered rows", "100"),
        ("input rows / s", "250"),
    ]:
        assert f'<div class="k">{key}</div><div class="v">{value}</div>' in page
    assert "recorded nothing while this task ran" in page
    slow = render_preprocessing_page(TI, {**RESULT, "input_rows": 60, "duration_s": 46.4}, [], "x", now=2000.0)
    assert '<div class="k">input rows / s</div><div class="v">1.293</div>' in slow


def test_the_pool_is_drawn_around_the_run_with_the_run_shaded() -> None:
    page = render_preprocessing_page(TI, RESULT, POINTS, "ray_pool_autoscaler", now=2000.0)
    svg = chart(page, "ray-pool")
    assert markers(svg, "task") == [1000.0]
    assert len(polyline(svg, "pool")) == 3  # 950 and 1010 are within the margin; 500 and 1500 are not
    assert 'href="/mlk8s/ray-pool?dag_id=ray_pool_autoscaler"' in page


def test_a_running_task_has_a_window_up_to_now_and_reloads() -> None:
    running = TaskInstanceInfo("prep", "r1", "features", state="running", start=1000.0)
    assert pool_window(running, now=1234.0) == (1000.0, 1234.0)
    page = render_preprocessing_page(running, None, POINTS, "ray_pool_autoscaler", now=1234.0)
    assert "its row counts appear when it ends" in page and 'http-equiv="refresh"' in page
    assert pool_window(TaskInstanceInfo("p", "r", "t", state="queued"), now=1.0) is None


def test_a_failed_task_without_result_says_where_to_look() -> None:
    page = render_preprocessing_page(
        TaskInstanceInfo("p", "r", "t", state="failed", start=1.0, end=2.0), None, [], "x", 3.0
    )
    assert "ended failed without a result; the task log says why" in page
