"""Built-in transforms: plain functions over ``pyarrow.Table`` batches.

They are vectorised Arrow compute calls (C++ kernels, RE2 regexes), so a Ray task spends its time in Arrow,
not in the Python interpreter, and the same functions serve the Ray pipeline and the single-process
reference. Two kinds exist: a *map* returns a new table; a *filter* returns a boolean mask (true = keep).
User transforms follow the same two signatures: ``fn(table, **args) -> pa.Table`` or ``-> mask``.

The embedding transform is a class (:class:`~mlk8s.preprocessing.embedding.Embedder`, in its own module)
because the model must load once per worker, not once per batch.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlk8s.preprocessing.columns import set_column as _set
from mlk8s.preprocessing.columns import strings as _strings
from mlk8s.preprocessing.columns import text_column as _text
from mlk8s.preprocessing.embedding import Embedder
from mlk8s.preprocessing.schema import cast_to_schema, parse_fields

logger = logging.getLogger(__name__)


_SCRIPT_STYLE = r"(?is)<(script|style|noscript|template)\b[^>]*>.*?</(script|style|noscript|template)\s*>"
_COMMENT = r"(?s)<!--.*?-->"
_TAG = r"(?s)<[^>]*>"
# Order matters: &amp; last, so "&amp;lt;" becomes "&lt;" and not "<".
_ENTITIES = (
    ("&nbsp;", " "),
    ("&#160;", " "),
    ("&lt;", "<"),
    ("&gt;", ">"),
    ("&quot;", '"'),
    ("&#34;", '"'),
    ("&#39;", "'"),
    ("&apos;", "'"),
    ("&amp;", "&"),
)
_SPACE_OR_CONTROL = r"[\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+"


def html_to_text(
    table: pa.Table, *, html_column: str = "html", text_column: str = "text", keep_html: bool = False
) -> pa.Table:
    """Text out of HTML: scripts, styles, comments and tags removed, common entities decoded.

    Where a row already has non-empty ``text`` it is kept; the ``html`` column is dropped unless
    ``keep_html`` (it is usually the largest column and nothing downstream needs it).
    """
    if html_column not in table.column_names:
        return table
    html = _strings(table[html_column])
    html = pc.replace_substring_regex(html, _SCRIPT_STYLE, " ")
    html = pc.replace_substring_regex(html, _COMMENT, " ")
    html = pc.replace_substring_regex(html, _TAG, " ")
    for entity, char in _ENTITIES:
        html = pc.replace_substring(html, entity, char)
    if text_column in table.column_names:
        existing = table[text_column].cast(html.type)
        has_text = pc.fill_null(pc.greater(pc.utf8_length(existing), 0), False)
        html = pc.if_else(has_text, existing, html)
    out = _set(table, text_column, html)
    return out if keep_html else out.drop_columns([html_column])


def clean_text(table: pa.Table, *, column: str = "text") -> pa.Table:
    """Control characters and runs of whitespace become one space; ends trimmed."""
    text = _text(table, column)
    text = pc.replace_substring_regex(text, _SPACE_OR_CONTROL, " ")
    text = pc.utf8_trim_whitespace(text)
    return _set(table, column, text)


_WHITESPACE = r"[ \t\n\r\x0b\x0c]"
_WORD = r"[^ \t\n\r\x0b\x0c]+"
_UPPER = r"[A-Z]"
_DIGIT = r"[0-9]"
_PUNCT = r"[!-/:-@\[-`{-~]"  # ASCII punctuation, as in string.punctuation


def text_features(table: pa.Table, *, column: str = "text", prefix: str = "") -> pa.Table:
    """Lengths and simple statistics a classifier can use next to the embedding.

    ``n_chars``, ``n_words`` (int32); ``mean_word_len``, ``upper_ratio``, ``digit_ratio``, ``punct_ratio``
    (float32). Words are runs of non-whitespace (ASCII whitespace); the ratios count ASCII upper-case
    letters, digits and punctuation per character (0 for empty text). ASCII classes keep the definitions
    exact and cheap (RE2's Unicode classes cost more and differ from Python's at the edges).
    """
    text = _text(table, column)
    n_chars = pc.utf8_length(text)
    n_words = pc.count_substring_regex(text, _WORD)
    n_space = pc.count_substring_regex(text, _WHITESPACE)
    denom = pc.max_element_wise(n_chars, 1).cast(pa.float64())
    word_chars = pc.subtract(n_chars, n_space).cast(pa.float64())
    mean_word = pc.divide(word_chars, pc.max_element_wise(n_words, 1).cast(pa.float64()))

    def ratio(pattern: str) -> Any:
        return pc.divide(pc.count_substring_regex(text, pattern).cast(pa.float64()), denom).cast(pa.float32())

    features = {
        "n_chars": n_chars.cast(pa.int32()),
        "n_words": n_words.cast(pa.int32()),
        "mean_word_len": mean_word.cast(pa.float32()),
        "upper_ratio": ratio(_UPPER),
        "digit_ratio": ratio(_DIGIT),
        "punct_ratio": ratio(_PUNCT),
    }
    for name, values in features.items():
        table = _set(table, prefix + name, values)
    return table


def non_empty_text(table: pa.Table, *, column: str = "text") -> pa.ChunkedArray:
    """Filter: keep rows whose text has at least one non-space character."""
    return pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(_text(table, column))), 0)


def min_words(table: pa.Table, *, column: str = "n_words", minimum: int = 1) -> pa.ChunkedArray:
    """Filter: keep rows with at least ``minimum`` words (needs :func:`text_features` first)."""
    return pc.fill_null(pc.greater_equal(table[column], minimum), False)


def to_schema(table: pa.Table, *, fields: dict[str, str], extra: str = "keep") -> pa.Table:
    """Cast to a declared schema: declared columns first, in order, with their types.

    A declared column the batch lacks becomes all-null; ``extra="drop"`` drops undeclared columns.
    A value that does not convert raises (a schema mismatch is an error, not silent nulls).
    """
    schema = parse_fields(fields)
    return cast_to_schema(table, schema, extra=extra)


def raw_files_to_documents(table: pa.Table, *, root: str = "") -> pa.Table:
    """Raw files (``bytes``, ``path`` from a binary read) to documents: ``id`` (the path under the input),
    and ``html`` for .html/.htm files, else ``text``; bytes decoded as UTF-8, bad bytes replaced."""
    paths = [str(p) for p in table["path"].to_pylist()]
    blobs = table["bytes"].to_pylist()
    ids, texts, htmls = [], [], []
    for path, blob in zip(paths, blobs):
        decoded = (blob or b"").decode("utf-8", errors="replace")
        is_html = path.lower().endswith((".html", ".htm", ".xhtml"))
        ids.append(path[len(root) :].lstrip("/") if root and path.startswith(root) else path)
        texts.append(None if is_html else decoded)
        htmls.append(decoded if is_html else None)
    return pa.table(
        {"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()), "html": pa.array(htmls, pa.string())}
    )


#: Built-in maps and filters, by the name a pipeline spec uses.
MAPS = {
    "html_to_text": html_to_text,
    "clean_text": clean_text,
    "text_features": text_features,
    "to_schema": to_schema,
}
FILTERS = {
    "non_empty_text": non_empty_text,
    "min_words": min_words,
}
#: Built-in actor transforms (a class, constructed once per actor with the step's args).
ACTORS: dict[str, type] = {"embed": Embedder}
