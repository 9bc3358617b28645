"""The scale-down window: an ask holds until the next decision, and the window keeps the most it asked lately."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mlk8s.scaling.window import update_window, window_expires_at


def test_an_ask_holds_until_a_decision_sees_it_go_then_one_window_more() -> None:
    entries = update_window((), now=0.0, extra=2, window_s=60.0)
    assert entries == ((0.0, 2),)
    entries = update_window(entries, now=30.0, extra=0, window_s=60.0)  # the ask went, seen at 30
    assert entries[0] == (0.0, 2) and window_expires_at(entries, 60.0) == 90.0
    assert update_window(entries, now=89.0, extra=0, window_s=60.0)[0] == (0.0, 2)  # still within the window
    assert update_window(entries, now=90.0, extra=0, window_s=60.0) == ((30.0, 0),)  # a whole window without it


def test_a_larger_ask_covers_the_smaller_ones_before_it() -> None:
    entries = update_window(((0.0, 3), (10.0, 1)), now=20.0, extra=2, window_s=60.0)
    assert entries == ((0.0, 3), (10.0, 2))  # the 2 takes over from 10, where the smaller ask began
    assert update_window(entries, now=25.0, extra=5, window_s=60.0) == ((0.0, 5),)


def test_a_window_of_zero_keeps_nothing_past_the_decision_that_saw_the_ask_go() -> None:
    entries = update_window(((0.0, 1),), now=5.0, extra=0, window_s=0.0)
    assert entries == ((5.0, 0),) and window_expires_at(entries, 0.0) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 5)), min_size=1, max_size=20), st.floats(0, 200))
def test_the_first_entry_is_the_most_asked_at_any_moment_of_the_window(
    steps: list[tuple[float, int]], window_s: float
) -> None:
    now, entries, seen = 0.0, (), []  # type: ignore[var-annotated]
    for dt, extra in steps:
        now += dt
        entries = update_window(entries, now, extra, window_s)
        seen.append((now, extra))
        # Each ask holds from its decision until the next decision (the last one: from now on), and counts
        # until a whole window has passed since the decision that saw it go.
        asks = [seen[-1][1]]
        asks += [n for (_, n), (t_next, _) in itertools.pairwise(seen) if t_next > now - window_s]
        assert entries[0][1] == max(asks)
        assert all(a[1] > b[1] for a, b in itertools.pairwise(entries))  # strictly decreasing: a handful
