"""The "Ray pool" page's plot (pure rendering; the page behind Airflow's auth is tested in
tests/integration/test_ray_pool_airflow_api.py)."""

from __future__ import annotations

import re

from mlk8s_airflow.ui.ray_pool import render_page, render_svg

HISTORY = [
    {"t": 0.0, "queued": 4, "running": 0, "pool": 0, "target": 2, "reason": "scale up 0 -> 2"},
    {"t": 30.0, "queued": 0, "running": 2, "pool": 2, "target": 2, "reason": "hold 2"},
    {"t": 60.0, "queued": 0, "running": 0, "pool": 2, "target": 0, "reason": "scale down <idle>"},
]


def polyline(svg: str, key: str) -> list[tuple[float, float]]:
    match = re.search(rf'class="series-{key}"[^>]*points="([^"]+)"', svg)
    assert match, key
    return [tuple(map(float, p.split(","))) for p in match.group(1).split()]  # type: ignore[misc]


def test_pool_size_is_drawn_as_steps_that_rise_when_work_queues() -> None:
    svg = render_svg(HISTORY, width=900, height=300)
    pool = polyline(svg, "pool")
    assert len(pool) == 2 * len(HISTORY) - 1  # a step per change
    ys = [y for _, y in pool]
    assert ys[0] > ys[-1]  # 0 workers at first (low), 2 at the end (higher on screen = smaller y)
    queued = polyline(svg, "queued")
    assert queued[0][1] < queued[-1][1]  # the backlog drains
    xs = [x for x, _ in pool]
    assert xs == sorted(xs) and xs[0] == 48.0 and xs[-1] == 900 - 16


def test_empty_history_says_so() -> None:
    assert "no decisions yet" in render_svg([])


def test_page_lists_changes_newest_first_and_escapes_reasons() -> None:
    page = render_page(HISTORY, "ray_pool_autoscaler", None)
    rows = re.findall(r"<tr><td>(\d\d:\d\d:\d\d)</td>", page)
    assert rows == ["00:01:00", "00:00:30", "00:00:00"]
    assert "scale down &lt;idle&gt;" in page and "<idle>" not in page
