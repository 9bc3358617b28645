"""The preprocessing page of one PreprocessingOperator task: what it read, wrote and filtered, how fast, and what
the Ray pool it ran on did while it ran (queue vs pool size, with the task's run shaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlk8s_airflow.ui import urls
from mlk8s_airflow.ui.html_page import Html, cards, document, esc, link, notice, task_line, task_title, utc
from mlk8s_airflow.ui.ray_pool_page import pool_chart
from mlk8s_airflow.ui.svg_chart import format_number
from mlk8s_airflow.ui.task_state import TaskInstanceInfo
from mlk8s_airflow.ui.xcom_shapes import PoolPoint, PreprocessingResult, parse

#: Pool history shown before and after the task's run, for context.
MARGIN_S = 120.0
REFRESH_S = 30


def pool_window(ti: TaskInstanceInfo, now: float) -> tuple[float, float] | None:
    if ti.start is None:
        return None
    return ti.start, ti.end if ti.end is not None else now


def _summary(result: PreprocessingResult) -> Html:
    rate = None
    if result.input_rows is not None and result.duration_s:
        rate = format_number(result.input_rows / result.duration_s)
    return cards(
        [
            ("input rows", result.input_rows),
            ("output rows", result.output_rows),
            ("filtered rows", result.filtered_rows),
            ("duration (s)", None if result.duration_s is None else f"{result.duration_s:.1f}"),
            ("input rows / s", rate),
        ]
    )


def _pool_section(points: Sequence[PoolPoint], window: tuple[float, float] | None, pool_dag_id: str) -> list[str]:
    pool_link = link(urls.page_url(urls.RAY_POOL_PAGE, dag_id=pool_dag_id), "the Ray pool page")
    section: list[str] = [f'<h3>The Ray pool while this task ran</h3><p class="sub">From {pool_link}.</p>']
    if window is None:
        return [*section, notice("info", "The task has not started: no pool history to show yet.")]
    start, end = window
    shown = [p for p in points if start - MARGIN_S <= p.t <= end + MARGIN_S]
    if not shown:
        kept = f" (its history holds {utc(points[0].t)} to {utc(points[-1].t)} UTC)" if points else ""
        section.append(
            notice("info", f"The Ray pool sensor of {pool_dag_id} recorded nothing while this task ran{kept}.")
        )
    return [*section, pool_chart(shown, window=window)]


def render_preprocessing_page(
    ti: TaskInstanceInfo, result_value: Any, pool_points: Sequence[PoolPoint], pool_dag_id: str, now: float
) -> str:
    result, problem = parse(PreprocessingResult, result_value, "result")
    body: list[str] = []
    if problem:
        body.append(notice("warn", "The result XCom does not have the shape this page reads.", problem))
    if result is not None:
        body += [_summary(result), f'<p class="sub">Output: {esc(result.output_uri or "-")}</p>']
    elif ti.unfinished:
        body.append(notice("info", f"The task is {ti.state or 'not started yet'}: its row counts appear when it ends."))
    else:
        body.append(notice("warn", f"This try ended {ti.state} without a result; the task log says why."))
    body += _pool_section(pool_points, pool_window(ti, now), pool_dag_id)
    title = task_title(ti)
    return document(
        f"Preprocessing: {title}",
        f"Preprocessing: {title}",
        task_line(ti),
        body,
        refresh_s=REFRESH_S if ti.unfinished else None,
    )
