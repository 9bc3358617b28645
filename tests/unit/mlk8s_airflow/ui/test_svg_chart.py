"""The SVG chart: what is drawn is the data (points, steps, markers), scaled into the plot area."""

from __future__ import annotations

import math

import pytest

from mlk8s_airflow.ui.svg_chart import (
    PAD_LEFT,
    PAD_RIGHT,
    PAD_TOP,
    Axis,
    Marker,
    Series,
    nice_step,
    render_chart,
    time_step,
)
from tests.unit.mlk8s_airflow.ui.charts import markers, polyline


@pytest.mark.parametrize(
    ("span", "step"), [(10, 2), (1, 0.2), (7, 2), (100, 20), (0.03, 0.01), (1234, 500), (0, 1), (math.inf, 1)]
)
def test_nice_step_is_one_two_or_five_times_a_power_of_ten(span: float, step: float) -> None:
    assert nice_step(span, 5) == pytest.approx(step)


@pytest.mark.parametrize(("span", "step"), [(50, 10), (600, 120), (7200, 1800), (86400 * 3, 86400)])
def test_time_steps_read_as_clock_times(span: float, step: float) -> None:
    assert time_step(span) == step


def test_a_line_draws_each_point_in_order_inside_the_plot_area() -> None:
    points = [(0.0, 4.0), (10.0, 2.0), (20.0, 1.0), (30.0, 0.5)]
    svg = render_chart(
        "t", [Series("loss", "loss", "#000", points)], x_axis=Axis("step"), y_axis=Axis("loss"), width=600, height=200
    )
    drawn = polyline(svg, "loss")
    assert len(drawn) == len(points)
    xs, ys = [x for x, _ in drawn], [y for _, y in drawn]
    assert xs[0] == PAD_LEFT and xs[-1] == 600 - PAD_RIGHT and xs == sorted(xs)
    assert ys == sorted(ys)  # falling loss: every point lower on screen (larger y) than the last
    assert min(ys) >= PAD_TOP
    assert 'data-points="4"' in svg and svg.count('class="point point-loss"') == 4


def test_a_step_series_holds_each_value_until_the_next_point() -> None:
    svg = render_chart(
        "t",
        [Series("pool", "pool", "#000", [(0, 0), (10, 2), (20, 1)], step=True)],
        x_axis=Axis("t"),
        y_axis=Axis("n", from_zero=True),
    )
    drawn = polyline(svg, "pool")
    assert len(drawn) == 5
    assert drawn[1][0] == drawn[2][0] and drawn[1][1] == drawn[0][1]  # vertical rise at x=10 from the old value


def test_markers_and_bands_are_drawn_at_their_x_with_their_label() -> None:
    svg = render_chart(
        "t",
        [Series("loss", "loss", "#000", [(0, 1), (100, 0)])],
        x_axis=Axis("step"),
        y_axis=Axis("loss"),
        markers=[
            Marker(40, "checkpoint", "checkpoint at 40", "#0f0"),
            Marker(60, "resume", "lost <5>", "#f00", width=5),
        ],
    )
    assert markers(svg, "checkpoint") == [40.0]
    assert markers(svg, "resume") == [60.0]
    assert "<title>lost &lt;5&gt;</title>" in svg  # labels are escaped
    assert 'fill-opacity="0.18"' in svg  # the band


def test_non_finite_values_are_left_out_not_drawn_as_nan() -> None:
    svg = render_chart(
        "t", [Series("loss", "loss", "#000", [(0, 1), (1, math.nan), (2, 0.5)])], x_axis=Axis("s"), y_axis=Axis("l")
    )
    assert len(polyline(svg, "loss")) == 2
    assert "nan" not in svg.lower()


def test_long_series_have_no_dots() -> None:
    points = [(float(i), float(i)) for i in range(500)]
    svg = render_chart("t", [Series("loss", "loss", "#000", points)], x_axis=Axis("s"), y_axis=Axis("l"))
    assert len(polyline(svg, "loss")) == 500 and "<circle" not in svg


def test_time_axis_ticks_are_utc_clock_times() -> None:
    svg = render_chart(
        "t", [Series("q", "q", "#000", [(0, 1), (600, 2)])], x_axis=Axis("time", time=True), y_axis=Axis("n")
    )
    assert ">00:00<" in svg and ">00:10<" in svg and "time (UTC)" in svg


def test_nothing_to_plot_says_so() -> None:
    svg = render_chart(
        "t", [Series("q", "q", "#000", [])], x_axis=Axis("t"), y_axis=Axis("n"), empty="no decisions recorded"
    )
    assert "no decisions recorded" in svg and "<polyline" not in svg
