"""Read back what a chart drew: the points of a series, the markers of a kind (shared by the pages' tests)."""

from __future__ import annotations

import re


def polyline(svg: str, key: str) -> list[tuple[float, float]]:
    match = re.search(rf'<polyline class="series series-{key}"[^>]*points="([^"]*)"', svg)
    assert match, f"no series {key!r} in the chart"
    return [(float(x), float(y)) for x, y in (p.split(",") for p in match.group(1).split())]


def markers(svg: str, kind: str) -> list[float]:
    """The data x of every marker of ``kind``."""
    return [float(x) for x in re.findall(rf'<g class="marker marker-{kind}" data-x="([^"]+)"', svg)]


def chart(page: str, name: str) -> str:
    match = re.search(rf'<svg class="chart" data-chart="{name}".*?</svg>', page, re.S)
    assert match, f"no chart {name!r} on the page"
    return match.group(0)
