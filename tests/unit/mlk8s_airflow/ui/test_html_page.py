"""The pages' HTML: data is escaped by default; only markup built as Html passes through."""

from __future__ import annotations

from mlk8s_airflow.ui.html_page import Html, cards, document, esc, link, notice, table, utc


def test_data_is_escaped_and_html_passes_through() -> None:
    assert esc("<script>") == "&lt;script&gt;"
    assert esc(Html("<b>x</b>")) == "<b>x</b>"
    assert esc(None) == ""


def test_a_table_escapes_cells_and_says_when_empty() -> None:
    html = table("t", ["a", "b"], [("<x>", link("/p?a=1&b=2", "go"))])
    assert "<td>&lt;x&gt;</td>" in html and 'href="/p?a=1&amp;b=2"' in html
    assert "nothing here" in table("t", ["a"], [], empty="nothing here")


def test_link_targets_the_top_window_so_it_leaves_the_ui_iframe() -> None:
    assert 'target="_top"' in link("/x", "x")


def test_notice_cards_and_document() -> None:
    assert 'class="notice error"' in notice("error", "bad", "line <1>") and "line &lt;1&gt;" in notice(
        "error", "b", "line <1>"
    )
    assert 'data-key="steps"' in cards([("steps", 3)])
    page = document("T <1>", "H", "sub", ["<p>x</p>"], refresh_s=30)
    assert page.startswith("<!doctype html>") and "<title>T &lt;1&gt;</title>" in page
    assert 'http-equiv="refresh" content="30"' in page
    assert "refresh" not in document("T", "H", "", [])


def test_utc() -> None:
    assert utc(0) == "1970-01-01 00:00:00" and utc(None) == ""
