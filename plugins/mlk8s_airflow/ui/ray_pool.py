"""The "Ray pool" page: queue length vs pool size over time, and the reason of every decision.

The sensor keeps its time series in the XCom ``ray_pool_history``; this small FastAPI app (mounted by the
plugin in Airflow's API server, behind Airflow's own auth: the caller needs read access to the DAG's XComs)
renders it as an inline SVG, so it needs no JavaScript bundle and works inside the UI's iframe.

Every Airflow process imports the plugin, but only the API server serves the page, so the FastAPI app (and
Airflow's API security modules, seconds to import) is built on the first request, not at import.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: Where the plugin mounts the app in the API server.
URL_PREFIX = "/mlk8s-ray-pool"
DEFAULT_DAG_ID = "ray_pool_autoscaler"
DEFAULT_TASK_ID = "size_ray_pool"
HISTORY_XCOM_KEY = "ray_pool_history"  # the same key as mlk8s_airflow.sensors.ray_pool (kept import-light)

SERIES = (
    ("queued", "queued + scheduled tasks", "#1f6feb", ""),
    ("running", "running tasks", "#8b949e", ""),
    ("pool", "pool size (workers)", "#2da44e", ""),
    ("target", "target", "#d4a72c", "6,4"),
)


def render_svg(history: Sequence[Mapping[str, Any]], width: int = 900, height: int = 300) -> str:
    """A step plot of the series over time; pure, so a test can check what the page draws."""
    pad_l, pad_r, pad_t, pad_b = 48, 16, 16, 36
    if not history:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle">no decisions yet</text></svg>'
        )
    t0 = float(history[0]["t"])
    t1 = max(float(history[-1]["t"]), t0 + 1.0)
    top = max(1, *(int(p.get(key, 0)) for p in history for key, *_ in SERIES))
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(t: float) -> float:
        return pad_l + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return pad_t + plot_h - v / top * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">']
    parts.append(f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d0d7de"/>')
    for i in range(5):
        value = top * i / 4
        parts.append(
            f'<text x="{pad_l - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>'
            f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eaeef2"/>'
        )
    minutes = (t1 - t0) / 60
    parts.append(
        f'<text x="{pad_l + plot_w / 2}" y="{height - 8}" text-anchor="middle">minutes since '
        f"{datetime.fromtimestamp(t0, UTC):%Y-%m-%d %H:%M:%S} UTC (span {minutes:.1f} min)</text>"
    )
    for n, (key, label, color, dash) in enumerate(SERIES):
        points: list[str] = []
        for i, p in enumerate(history):
            t, v = float(p["t"]), float(p.get(key, 0))
            if i:  # step: hold the previous value until this point's time
                points.append(f"{x(t):.1f},{y(float(history[i - 1].get(key, 0))):.1f}")
            points.append(f"{x(t):.1f},{y(v):.1f}")
        style = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline class="series-{key}" fill="none" stroke="{color}" stroke-width="2"{style} '
            f'points="{" ".join(points)}"/>'
        )
        parts.append(f'<text x="{pad_l + 8 + n * 180}" y="{pad_t + 12}" fill="{color}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_page(history: Sequence[Mapping[str, Any]], dag_id: str, run_id: str | None) -> str:
    rows = []
    last = None
    for p in reversed(history):
        if last is not None and (p["pool"], p["target"]) == last:
            continue  # one row per change of size or target
        last = (p["pool"], p["target"])
        when = datetime.fromtimestamp(float(p["t"]), UTC).strftime("%H:%M:%S")
        rows.append(
            f"<tr><td>{when}</td><td>{p['queued']}</td><td>{p['running']}</td><td>{p['pool']}</td>"
            f"<td>{p['target']}</td><td>{html.escape(str(p.get('reason', '')))}</td></tr>"
        )
        if len(rows) >= 50:
            break
    title = f"Ray pool: {html.escape(dag_id)}" + (f" / {html.escape(run_id)}" if run_id else " (latest run)")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Ray pool</title>"
        "<style>body{font-family:sans-serif;margin:16px}table{border-collapse:collapse;font-size:12px}"
        "td,th{border-bottom:1px solid #eaeef2;padding:4px 8px;text-align:left;vertical-align:top}</style>"
        f"</head><body><h3>{title}</h3>{render_svg(history)}"
        "<h4>Decisions (newest first, one row per change)</h4><table><tr><th>time (UTC)</th><th>queued</th>"
        f"<th>running</th><th>pool</th><th>target</th><th>reason</th></tr>{''.join(rows)}</table></body></html>"
    )


def load_history(session: Any, dag_id: str, run_id: str | None, task_id: str) -> list[dict[str, Any]]:
    """The sensor's time series from XCom: of ``run_id``, or of the latest run that has one."""
    from sqlalchemy import select

    from mlk8s import compat

    XComModel = compat.get("airflow.XComModel")

    query = select(XComModel).where(
        XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == HISTORY_XCOM_KEY
    )
    if run_id:
        query = query.where(XComModel.run_id == run_id)
    row = session.scalars(query.order_by(XComModel.timestamp.desc()).limit(1)).first()
    if row is None:
        return []
    value = XComModel.deserialize_value(row)
    return list(value) if isinstance(value, list) else []


class LazyApp:
    """An ASGI app that imports the real one (:mod:`mlk8s_airflow.ui.ray_pool_app`) on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from mlk8s_airflow.ui.ray_pool_app import app

            self._app = app
        await self._app(scope, receive, send)


ray_pool_app = LazyApp()


#: For the AirflowPlugin: ``fastapi_apps = [FASTAPI_APP]`` and ``external_views = EXTERNAL_VIEWS``.
FASTAPI_APP = {"app": ray_pool_app, "url_prefix": URL_PREFIX, "name": "mlk8s Ray pool"}
EXTERNAL_VIEWS = [
    {
        "name": "Ray pool",
        "href": f"{URL_PREFIX}/?dag_id={DEFAULT_DAG_ID}",
        "destination": "nav",
        "url_route": "mlk8s-ray-pool",
        "category": "browse",
    },
]
