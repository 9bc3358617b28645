"""Line and step charts as inline SVG, rendered on the server: the pages need no JavaScript and no bundle.

Why not a plotting library: matplotlib (not a dependency) would add tens of MB and a second of import to the
API server for three small charts, and a JavaScript charting library would have to be vendored and served.
SVG written here is a few hundred lines of text a browser draws natively, hover text included (``<title>``),
and a test can read back exactly what was drawn: every series is one ``<polyline class="series-KEY">`` whose
``points`` are the data points, every event one ``<g class="marker marker-KIND">``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

#: Series with at most this many points also get a dot per point (with hover text); longer ones are lines only.
DOTS_UP_TO = 80

PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 16, 28, 40


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x, y); ``step`` holds each value until the next point (a size over time)."""

    key: str
    label: str
    color: str
    points: Sequence[tuple[float, float]]
    step: bool = False
    dash: str = ""
    hover: Sequence[str] = ()  # one text per point, shown on its dot


@dataclass(frozen=True)
class Marker:
    """An event at ``x`` (a vertical line), or a band from ``x`` to ``x + width`` (e.g. steps redone)."""

    x: float
    kind: str
    label: str
    color: str
    width: float = 0.0


@dataclass(frozen=True)
class Axis:
    label: str
    time: bool = False  # x values are Unix seconds, shown as UTC clock times
    from_zero: bool = False  # y axes of counts start at 0


def nice_step(span: float, ticks: int = 5) -> float:
    """A tick spacing of 1, 2 or 5 times a power of ten that gives about ``ticks`` ticks over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def time_step(span: float, ticks: int = 5) -> float:
    """A tick spacing in seconds that reads well on a clock (10 s, 5 min, 1 h, ...)."""
    raw = span / max(1, ticks)
    return float(next((s for s in TIME_STEPS if s >= raw), TIME_STEPS[-1] * math.ceil(raw / TIME_STEPS[-1])))


def format_number(value: float) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.4g}"


def format_time(t: float, step: float) -> str:
    when = datetime.fromtimestamp(t, UTC)
    return when.strftime("%H:%M:%S" if step < 60 else "%H:%M")


@dataclass(frozen=True)
class _Frame:
    """Maps data coordinates to pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int

    @property
    def plot_w(self) -> float:
        return self.width - PAD_LEFT - PAD_RIGHT

    @property
    def plot_h(self) -> float:
        return self.height - PAD_TOP - PAD_BOTTOM

    def x(self, v: float) -> float:
        return PAD_LEFT + (v - self.x0) / (self.x1 - self.x0) * self.plot_w

    def y(self, v: float) -> float:
        return PAD_TOP + self.plot_h - (v - self.y0) / (self.y1 - self.y0) * self.plot_h


def _frame(series: Sequence[Series], markers: Sequence[Marker], y_axis: Axis, width: int, height: int) -> _Frame:
    xs = [x for s in series for x, _ in s.points] + [m.x for m in markers] + [m.x + m.width for m in markers]
    ys = [y for s in series for _, y in s.points if math.isfinite(y)]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1.0
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if y_axis.from_zero:
        y0 = min(0.0, y0)
    if y1 <= y0:
        y1 = y0 + 1.0
    step = nice_step(y1 - y0, 4)
    y0, y1 = math.floor(y0 / step) * step, math.ceil(y1 / step) * step
    return _Frame(x0, x1, y0, y1 if y1 > y0 else y0 + step, width, height)


def _grid(frame: _Frame, x_axis: Axis, y_axis: Axis) -> list[str]:
    parts = [
        f'<rect class="plot-area" x="{PAD_LEFT}" y="{PAD_TOP}" width="{frame.plot_w:.1f}" '
        f'height="{frame.plot_h:.1f}" fill="none" stroke="#d0d7de"/>'
    ]
    y_step = nice_step(frame.y1 - frame.y0, 4)
    value = frame.y0
    while value <= frame.y1 + y_step / 1000:
        y = frame.y(value)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{PAD_LEFT + frame.plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
            f'<text class="y-tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{format_number(value)}</text>'
        )
        value += y_step
    x_step = time_step(frame.x1 - frame.x0) if x_axis.time else nice_step(frame.x1 - frame.x0)
    tick = math.ceil(frame.x0 / x_step) * x_step
    while tick <= frame.x1 + x_step / 1000:
        x = frame.x(tick)
        text = format_time(tick, x_step) if x_axis.time else format_number(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP + frame.plot_h:.1f}" y2="{PAD_TOP + frame.plot_h + 4:.1f}" '
            f'stroke="#8c959f"/><text class="x-tick" x="{x:.1f}" y="{PAD_TOP + frame.plot_h + 16:.1f}" '
            f'text-anchor="middle">{text}</text>'
        )
        tick += x_step
    label = x_axis.label + (" (UTC)" if x_axis.time else "")
    parts.append(
        f'<text x="{PAD_LEFT + frame.plot_w / 2:.1f}" y="{frame.height - 6}" text-anchor="middle">'
        f"{html.escape(label)}</text>"
        f'<text x="12" y="{PAD_TOP + frame.plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {PAD_TOP + frame.plot_h / 2:.1f})">{html.escape(y_axis.label)}</text>'
    )
    return parts


def _marker(frame: _Frame, marker: Marker) -> str:
    x = frame.x(marker.x)
    title = f"<title>{html.escape(marker.label)}</title>"
    top, bottom = PAD_TOP, PAD_TOP + frame.plot_h
    if marker.width > 0:
        w = max(1.0, frame.x(marker.x + marker.width) - x)
        shape = (
            f'<rect x="{x:.1f}" y="{top}" width="{w:.1f}" height="{frame.plot_h:.1f}" fill="{marker.color}" '
            f'fill-opacity="0.18"/><line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom:.1f}" '
            f'stroke="{marker.color}" stroke-width="2"/>'
        )
    else:
        shape = (
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom:.1f}" stroke="{marker.color}" '
            f'stroke-width="1.5" stroke-opacity="0.7"/><path d="M{x - 4:.1f},{top} h8 l-4,6 z" fill="{marker.color}"/>'
        )
    return f'<g class="marker marker-{marker.kind}" data-x="{marker.x:g}">{title}{shape}</g>'


def _series(frame: _Frame, series: Series) -> list[str]:
    coords: list[str] = []
    previous_y: float | None = None
    for x_value, y_value in series.points:
        if not math.isfinite(y_value):
            continue
        x, y = frame.x(x_value), frame.y(y_value)
        if series.step and previous_y is not None:
            coords.append(f"{x:.1f},{previous_y:.1f}")
        coords.append(f"{x:.1f},{y:.1f}")
        previous_y = y
    dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
    parts = [
        f'<polyline class="series series-{series.key}" data-points="{len(series.points)}" fill="none" '
        f'stroke="{series.color}" stroke-width="2"{dash} points="{" ".join(coords)}"/>'
    ]
    if len(series.points) <= DOTS_UP_TO:
        for i, (x_value, y_value) in enumerate(series.points):
            if not math.isfinite(y_value):
                continue
            hover = series.hover[i] if i < len(series.hover) else f"{series.label}: {format_number(y_value)}"
            parts.append(
                f'<circle class="point point-{series.key}" cx="{frame.x(x_value):.1f}" cy="{frame.y(y_value):.1f}" '
                f'r="3" fill="{series.color}"><title>{html.escape(hover)}</title></circle>'
            )
    return parts


def render_chart(
    name: str,
    series: Sequence[Series],
    *,
    x_axis: Axis,
    y_axis: Axis,
    markers: Sequence[Marker] = (),
    width: int = 900,
    height: int = 300,
    empty: str = "nothing to plot yet",
) -> str:
    """The chart as one ``<svg class="chart" data-chart=NAME>``; ``empty`` is drawn when no series has points."""
    head = (
        f'<svg class="chart" data-chart="{html.escape(name)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-size="11" role="img" '
        f'aria-label="{html.escape(name)}">'
    )
    if not any(s.points for s in series):
        return f'{head}<text x="{width // 2}" y="{height // 2}" text-anchor="middle">{html.escape(empty)}</text></svg>'
    frame = _frame(series, markers, y_axis, width, height)
    parts = [head, *_grid(frame, x_axis, y_axis)]
    parts += [_marker(frame, m) for m in markers]
    for s in series:
        parts += _series(frame, s)
    x = PAD_LEFT
    for s in series:
        parts.append(
            f'<rect x="{x}" y="8" width="12" height="3" fill="{s.color}"/>'
            f'<text x="{x + 16}" y="13" fill="#24292f">{html.escape(s.label)}</text>'
        )
        x += 24 + 7 * len(s.label)
    parts.append("</svg>")
    return "".join(parts)
