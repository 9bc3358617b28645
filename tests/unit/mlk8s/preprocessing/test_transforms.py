"""Built-in transforms against plain-Python expectations."""

from __future__ import annotations

import re
import string

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlk8s.preprocessing.transforms import (
    clean_text,
    html_to_text,
    min_words,
    non_empty_text,
    raw_files_to_documents,
    text_features,
    to_schema,
)


def test_html_to_text_drops_markup_scripts_styles_comments_and_decodes_entities() -> None:
    html = (
        "<html><head><style>p {color: red}</style><script>var x = '<b>';</script></head>"
        "<body><!-- hidden --><h1>Fish &amp; Chips</h1><p>5 &lt; 6&nbsp;ok</p></body></html>"
    )
    table = pa.table({"id": ["a"], "html": [html]})
    out = clean_text(html_to_text(table))
    assert out.column_names == ["id", "text"]
    assert out["text"].to_pylist() == ["Fish & Chips 5 < 6 ok"]


def test_html_to_text_keeps_existing_text_and_fills_only_where_missing() -> None:
    table = pa.table({"text": ["given", None, ""], "html": ["<p>ignored</p>", "<p>from html</p>", "<i>x</i>"]})
    out = html_to_text(table)
    assert [t.strip() for t in out["text"].to_pylist()] == ["given", "from html", "x"]
    assert "html" not in out.column_names
    assert "html" in html_to_text(table, keep_html=True).column_names


def test_html_to_text_without_html_column_is_a_no_op() -> None:
    table = pa.table({"text": ["a"]})
    assert html_to_text(table) is table


def test_text_columns_null_in_every_row_are_text() -> None:
    """JSON gives a field that is null in every row of a batch the null type; the transforms take it as ""."""
    table = pa.table({"html": pa.nulls(2), "text": pa.array(["a  b", None])})
    out = non_empty_text_table(clean_text(html_to_text(table)))
    assert out["text"].to_pylist() == ["a b"]
    assert clean_text(pa.table({"text": pa.nulls(1)}))["text"].to_pylist() == [""]


def non_empty_text_table(table: pa.Table) -> pa.Table:
    return table.filter(non_empty_text(table))


def test_clean_text_collapses_whitespace_and_control_characters() -> None:
    out = clean_text(pa.table({"text": ["  a\tb\n\n c\x00d  ", None]}))
    assert out["text"].to_pylist() == ["a b c d", ""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_letters + string.digits + " .,!?'", max_size=60), max_size=8))
def test_text_features_match_python(texts: list[str]) -> None:
    out = text_features(clean_text(pa.table({"text": pa.array(texts, pa.string())})))
    for row, raw in zip(out.to_pylist(), texts):
        text = re.sub(r"\s+", " ", raw).strip()
        words = text.split()
        assert row["n_chars"] == len(text)
        assert row["n_words"] == len(words)
        expected_mean = sum(len(w) for w in words) / max(len(words), 1)
        assert row["mean_word_len"] == pytest.approx(expected_mean, rel=1e-6)
        denom = max(len(text), 1)
        assert row["upper_ratio"] == pytest.approx(sum(c.isupper() for c in text) / denom, rel=1e-6)
        assert row["digit_ratio"] == pytest.approx(sum(c.isdigit() for c in text) / denom, rel=1e-6)
        assert row["punct_ratio"] == pytest.approx(sum(c in string.punctuation for c in text) / denom, rel=1e-6)


def test_text_features_types_and_prefix() -> None:
    out = text_features(pa.table({"text": ["ab cd"]}), prefix="f_")
    assert out.schema.field("f_n_words").type == pa.int32()
    assert out.schema.field("f_upper_ratio").type == pa.float32()


def test_filters_return_masks() -> None:
    table = text_features(pa.table({"text": ["one two", "", "   ", None, "x"]}))
    assert non_empty_text(table).to_pylist() == [True, False, False, False, True]
    assert min_words(table, minimum=2).to_pylist() == [True, False, False, False, False]


def test_to_schema_orders_casts_fills_and_drops() -> None:
    table = pa.table({"b": ["1", "2"], "a": [1.0, 2.0], "zzz": [0, 0]})
    out = to_schema(table, fields={"a": "int64", "b": "int32", "c": "list<float32>"}, extra="drop")
    assert out.schema == pa.schema([("a", pa.int64()), ("b", pa.int32()), ("c", pa.list_(pa.float32()))])
    assert out.to_pylist() == [{"a": 1, "b": 1, "c": None}, {"a": 2, "b": 2, "c": None}]


def test_to_schema_refuses_values_that_do_not_convert() -> None:
    with pytest.raises(pa.ArrowInvalid):
        to_schema(pa.table({"label": ["spam"]}), fields={"label": "int64"})


def test_raw_files_become_documents_by_extension() -> None:
    table = pa.table({"bytes": [b"plain \xff text", b"<p>hi</p>"], "path": ["/in/a/one.txt", "/in/two.HTML"]})
    out = raw_files_to_documents(table, root="/in")
    assert out.to_pylist() == [
        {"id": "a/one.txt", "text": "plain \ufffd text", "html": None},
        {"id": "two.HTML", "text": None, "html": "<p>hi</p>"},
    ]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=10), st.integers(0, 3))
def test_text_features_on_any_unicode_and_sliced_arrays(texts: list[str | None], cut: int) -> None:
    """Raw (uncleaned) unicode text, nulls, and a sliced array (non-zero offset) still match Python."""
    table = pa.table({"text": pa.array(texts, pa.string())}).slice(min(cut, len(texts)))
    out = text_features(table)
    for row, raw in zip(out.to_pylist(), texts[min(cut, len(texts)) :]):
        text = raw or ""
        words = [w for w in re.split(r"[ \t\n\r\x0b\x0c]+", text) if w]
        assert row["n_chars"] == len(text)
        assert row["n_words"] == len(words)
        spaces = sum(c in " \t\n\r\x0b\x0c" for c in text)
        assert row["mean_word_len"] == pytest.approx((len(text) - spaces) / max(len(words), 1), rel=1e-6)
        assert row["upper_ratio"] == pytest.approx(
            sum(c in string.ascii_uppercase for c in text) / max(len(text), 1), rel=1e-6
        )
