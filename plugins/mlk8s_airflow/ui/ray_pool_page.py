"""The Ray pool page: queue vs pool size over time with the reason of every decision, and the sensor's errors.

It draws the Ray pool sensor's XComs (``ray_pool_history``: one point per cycle; ``ray_pool_errors``: what
failed, when) and, when there is nothing to draw, says why: no such DAG, paused, no run yet, the sensor
waiting for a worker, or failing (with its errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlk8s_airflow.ui import urls
from mlk8s_airflow.ui.html_page import Html, document, esc, link, notice, table, utc
from mlk8s_airflow.ui.svg_chart import Axis, Marker, Series, render_chart
from mlk8s_airflow.ui.task_state import SensorStatus
from mlk8s_airflow.ui.xcom_shapes import PoolPoint, SensorError, parse_list

HISTORY_XCOM_KEY = "ray_pool_history"  # the sensor's keys (mlk8s_airflow.sensors.ray_pool, not imported: light)
ERRORS_XCOM_KEY = "ray_pool_errors"

SERIES = (
    ("queued", "queued + scheduled tasks", "#0969da", ""),
    ("running", "running tasks", "#8c959f", ""),
    ("pool", "pool size (workers)", "#2da44e", ""),
    ("target", "target", "#bf8700", "6,4"),
)
ERROR_COLOR = "#d1242f"
REFRESH_S = 30
DECISION_ROWS = 50


def pool_chart(
    points: Sequence[PoolPoint], errors: Sequence[SensorError] = (), window: tuple[float, float] | None = None
) -> str:
    """Step lines of queue, running, pool size and target over time; errors as red markers; ``window`` shaded."""
    hover = [
        f"{utc(p.t)}: {p.queued} queued, {p.running} running, pool {p.pool} -> {p.target}: {p.reason}" for p in points
    ]
    series = [
        Series(key, label, color, [(p.t, float(getattr(p, key))) for p in points], step=True, dash=dash, hover=hover)
        for key, label, color, dash in SERIES
    ]
    markers = [Marker(e.t, "error", f"{utc(e.t)}: {e.message}", ERROR_COLOR) for e in errors]
    if window is not None:
        markers.insert(
            0, Marker(window[0], "task", "this task's run", "#8250df", width=max(1.0, window[1] - window[0]))
        )
    return render_chart(
        "ray-pool",
        series,
        x_axis=Axis("time", time=True),
        y_axis=Axis("tasks / workers", from_zero=True),
        markers=markers,
        empty="no decisions recorded",
    )


def decision_rows(points: Sequence[PoolPoint]) -> list[tuple[str, int, int, int, int, str]]:
    """Newest first, one row per change of pool size or target (a quiet hour is one row, not 240)."""
    rows = []
    last: tuple[int, int] | None = None
    for p in reversed(points):
        if (p.pool, p.target) == last:
            continue
        last = (p.pool, p.target)
        rows.append((utc(p.t), p.queued, p.running, p.pool, p.target, p.reason))
        if len(rows) >= DECISION_ROWS:
            break
    return rows


def why_nothing(status: SensorStatus, errors: Sequence[SensorError]) -> Html | None:
    """Why there are no decisions to show, as the fix the user can make; None when the sensor just started."""
    if not status.dag_exists:
        return notice(
            "error",
            f"There is no DAG {status.dag_id!r}: put dags/ray_pool_autoscaler.py in the DAGs folder, or open this "
            "page with ?dag_id= naming the DAG that runs the Ray pool sensor.",
        )
    sensor = status.sensor
    if sensor is None:
        if status.is_paused:
            return notice("warn", f"{status.dag_id} is paused: unpause it and it starts the sensor (one run a day).")
        return notice("warn", f"{status.dag_id} has no run yet: trigger it, or wait for its daily run.")
    if sensor.state in ("scheduled", "queued"):
        return notice("info", f"The sensor {status.task_id} is {sensor.state}: waiting for a worker slot.")
    if sensor.state in ("failed", "up_for_retry", "upstream_failed") and not errors:
        return notice(
            "error",
            f"The sensor {status.task_id} is {sensor.state} (try {sensor.try_number}) and recorded no error: "
            "its task log says why.",
        )
    if sensor.state in ("running", "deferred"):
        return notice("info", f"The sensor {status.task_id} is {sensor.state}; its first cycle is not stored yet.")
    return None


def _status_line(status: SensorStatus, run_id: str | None) -> Html:
    sensor = status.sensor
    parts = [link(urls.dag_url(status.dag_id), status.dag_id)]
    if sensor is not None:
        ti_link = link(urls.task_instance_url(sensor.dag_id, sensor.run_id, sensor.task_id), sensor.run_id)
        state = esc(sensor.state or "none")
        parts.append(Html(f"{ti_link} · sensor {esc(sensor.task_id)} <b>{state}</b>, try {sensor.try_number}"))
    elif run_id:
        parts.append(Html(esc(run_id)))
    if status.is_paused:
        parts.append(Html("<b>paused</b>"))
    return Html(" · ".join(parts))


def render_ray_pool_page(status: SensorStatus, run_id: str | None, history_value: Any, errors_value: Any) -> str:
    points, point_problem = parse_list(PoolPoint, history_value, HISTORY_XCOM_KEY)
    errors, error_problem = parse_list(SensorError, errors_value, ERRORS_XCOM_KEY)
    body: list[str] = []
    for problem in (point_problem, error_problem):
        if problem:
            body.append(notice("warn", "An XCom of the sensor does not have the shape this page reads.", problem))
    if errors:
        latest = errors[-1]
        body.append(
            notice(
                "error",
                f"The sensor recorded {len(errors)} error(s); the latest at {utc(latest.t)} UTC:",
                latest.message,
            )
        )
    if not points and (hint := why_nothing(status, errors)) is not None:
        body.append(hint)
    body += ["<h3>Queue vs pool size</h3>", pool_chart(points, errors)]
    body += [
        "<h3>Decisions (newest first, one row per change)</h3>",
        table("decisions", ["time (UTC)", "queued", "running", "pool", "target", "reason"], decision_rows(points)),
    ]
    if errors:
        body += [
            "<h3>Errors (newest first)</h3>",
            table("errors", ["time (UTC)", "message"], [(utc(e.t), e.message) for e in reversed(errors)]),
        ]
    unfinished = status.sensor is None or status.sensor.unfinished
    return document(
        "Ray pool", "Ray pool", _status_line(status, run_id), body, refresh_s=REFRESH_S if unfinished else None
    )
