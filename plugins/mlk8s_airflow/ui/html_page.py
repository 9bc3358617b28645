"""The HTML the pages share: the document shell with its stylesheet, tables, notices and links.

Everything that comes from data is escaped here; a cell that is already HTML (a link) is passed as
:class:`Html`, so escaping is the default and markup the exception.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mlk8s_airflow.ui import urls

if TYPE_CHECKING:
    from mlk8s_airflow.ui.task_state import TaskInstanceInfo

STYLE = """
:root{color-scheme:light dark}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#24292f;background:#fff}
h2{font-size:18px;margin:0 0 4px}h3{font-size:15px;margin:20px 0 6px}
.sub{color:#57606a;font-size:13px;margin-bottom:12px}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;min-width:96px}
.card .k{color:#57606a;font-size:11px}.card .v{font-size:16px;font-weight:600}
table{border-collapse:collapse;font-size:12px}
td,th{border-bottom:1px solid #eaeef2;padding:4px 8px;text-align:left;vertical-align:top}
.notice{border-radius:6px;padding:8px 12px;margin:8px 0;font-size:13px}
.notice.info{background:#ddf4ff;border:1px solid #54aeff}
.notice.warn{background:#fff8c5;border:1px solid #d4a72c}
.notice.error{background:#ffebe9;border:1px solid #ff8182}
.notice pre{white-space:pre-wrap;margin:4px 0 0;font-size:12px}
svg.chart{max-width:100%;height:auto;background:#fff}
a{color:#0969da}
@media (prefers-color-scheme: dark){body{color:#e6edf3;background:#0d1117}.sub,.card .k{color:#8d96a0}
.notice.info{background:#0c2d6b}.notice.warn{background:#3b2e00}.notice.error{background:#4c0b0b}a{color:#4493f8}}
"""


class Html(str):
    """Text that is already HTML (built by this module or a page), inserted as is."""


def esc(value: object) -> str:
    return value if isinstance(value, Html) else html.escape("" if value is None else str(value))


def link(href: str, text: object) -> Html:
    return Html(f'<a href="{html.escape(href, quote=True)}" target="_top">{esc(text)}</a>')


def notice(kind: str, text: object, detail: str | None = None) -> Html:
    """A boxed message: ``kind`` is info, warn or error; ``detail`` is shown preformatted (error text)."""
    extra = f"<pre>{esc(detail)}</pre>" if detail else ""
    return Html(f'<div class="notice {kind}" role="status">{esc(text)}{extra}</div>')


def cards(items: Iterable[tuple[str, object]]) -> Html:
    """Key figures in a row of small boxes."""
    boxes = "".join(
        f'<div class="card" data-key="{esc(k)}"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>'
        for k, v in items
    )
    return Html(f'<div class="cards">{boxes}</div>')


def table(name: str, headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "none") -> Html:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}">{esc(empty)}</td></tr>'
    return Html(f'<table class="{esc(name)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def document(title: str, heading: str, sub: object, body: Iterable[str], *, refresh_s: int | None = None) -> str:
    """A whole page; ``refresh_s`` reloads it while the thing it shows is still changing."""
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}<title>{esc(title)}</title>'
        f'<style>{STYLE}</style></head><body><h2>{esc(heading)}</h2><div class="sub">{esc(sub)}</div>'
        + "".join(body)
        + "</body></html>"
    )


def utc(t: float | None) -> str:
    """A Unix time as ``2026-12-02 01:23:45`` (UTC), or an empty cell."""
    from datetime import UTC, datetime

    return "" if t is None else datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%d %H:%M:%S")


def task_title(ti: TaskInstanceInfo) -> str:
    return ti.task_id + ("" if ti.map_index < 0 else f"[{ti.map_index}]")


def task_line(ti: TaskInstanceInfo) -> Html:
    """DAG / run · state · try · a link to the task instance in Airflow's UI: the line under a task page's title."""
    airflow = link(urls.task_instance_url(ti.dag_id, ti.run_id, ti.task_id, ti.map_index), "open the task in Airflow")
    return Html(
        f"{link(urls.dag_url(ti.dag_id), ti.dag_id)} / {esc(ti.run_id)} · state <b>{esc(ti.state or 'none')}</b> · "
        f"try {ti.try_number} · {airflow}"
    )
