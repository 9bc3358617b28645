"""Deterministic sample documents for the demo, the tests and the benchmark generator.

Three topics, each with its own vocabulary, so a classifier trained on the embeddings (``label``) has
something real to learn. Some records are HTML (with scripts, entities and markup to strip), some plain
text, and a few are empty or whitespace-only, which the default pipeline filters out.

    python -m mlk8s.preprocessing.samples --output s3://bucket/docs.parquet [--rows 300] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path, PurePosixPath

import pyarrow as pa

from mlk8s import storage
from mlk8s.pod_contract import EXIT_OK, EXIT_USAGE

logger = logging.getLogger(__name__)

TOPICS: dict[str, list[str]] = {
    "sports": (
        "match team goal league coach season player score win defeat stadium referee striker keeper "
        "tournament final championship penalty transfer injury fans sprint marathon medal record"
    ).split(),
    "technology": (
        "software cloud server database kernel compiler network cluster latency python container "
        "kubernetes storage processor memory algorithm model training gpu deploy api release bug"
    ).split(),
    "cooking": (
        "recipe oven flour butter garlic onion simmer roast bake sauce pepper salt dough knead pan "
        "skillet broth herbs lemon chocolate sugar dinner kitchen taste spice grill"
    ).split(),
}
LABELS = list(TOPICS)
COMMON = "the a of and to in is for on with this that it was at by from new our".split()


def _sentence(rng: random.Random, topic: str) -> str:
    words = [rng.choice(TOPICS[topic]) if rng.random() < 0.6 else rng.choice(COMMON) for _ in range(rng.randint(6, 14))]
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), str(rng.randint(1, 2030)))
    return " ".join(words).capitalize() + rng.choice([".", ".", "!", "?"])


def _body(rng: random.Random, topic: str) -> str:
    return " ".join(_sentence(rng, topic) for _ in range(rng.randint(1, 5)))


def _html(rng: random.Random, topic: str, body: str) -> str:
    title = topic.capitalize() + " &amp; more"
    paragraphs = body.replace(". ", ".</p>\n<p>  ")
    return (
        f"<html><head><title>{title}</title><style>p {{color: red}}</style>"
        f"<script>var tracking = {rng.randint(0, 99999)};</script></head>"
        f"<body><!-- generated --><h1>{title}</h1><p>{paragraphs}</p>"
        f"<footer>&copy;&nbsp;{rng.randint(2000, 2030)}</footer></body></html>"
    )


def documents(rows: int = 300, seed: int = 7) -> pa.Table:
    """``id`` (string), ``label`` (int64, index into :data:`LABELS`), ``topic``, and ``text`` or ``html``."""
    rng = random.Random(seed)
    ids, labels, topics, texts, htmls = [], [], [], [], []
    for i in range(rows):
        label = rng.randrange(len(LABELS))
        topic = LABELS[label]
        body = _body(rng, topic)
        kind = rng.random()
        text: str | None
        html: str | None
        if kind < 0.05:
            text, html = rng.choice(["", "   ", "\n\t"]), None  # empty: filtered out
        elif kind < 0.45:
            text, html = None, _html(rng, topic, body)
        else:
            text, html = "  " + body.replace(". ", ".\n\n") + "  ", None
        ids.append(f"doc-{seed}-{i:07d}")
        labels.append(label)
        topics.append(topic)
        texts.append(text)
        htmls.append(html)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "label": pa.array(labels, pa.int64()),
            "topic": pa.array(topics, pa.string()),
            "text": pa.array(texts, pa.string()),
            "html": pa.array(htmls, pa.string()),
        }
    )


def _file_format(uri: str) -> str:
    """``parquet`` or ``jsonl``, from the name's suffix; a ``ValueError`` naming the value otherwise."""
    suffix = PurePosixPath(uri.rstrip("/")).suffix
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(f"--output: {uri!r} must end in .jsonl or .parquet")


def _encoded(table: pa.Table, file_format: str) -> bytes:
    if file_format == "parquet":
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return bytes(sink.getvalue())
    lines = (json.dumps({k: v for k, v in record.items() if v is not None}) + "\n" for record in table.to_pylist())
    return "".join(lines).encode()


def write_documents_to(uri: str, rows: int = 300, seed: int = 7) -> str:
    """Write :func:`documents` to a path or URI (``s3://``, ``gs://``, ``file://``), atomically; returns its URI.

    Through :mod:`mlk8s.storage`, as every pod writes: a DAG's ``data_root`` is a URI in a cluster, and a URI
    taken as a local path would land in the pod's own filesystem, lost with the pod.
    """
    file_format = _file_format(uri)
    loc = storage.resolve(uri)
    data = _encoded(documents(rows, seed), file_format)
    parent = loc.path.rpartition("/")[0]
    if parent:
        storage.call(loc, f"creating {parent}", storage.make_dirs, storage.Location(loc.fs, parent, parent))
    storage.call(loc, f"writing {loc.uri}", storage.write_atomic, loc, data)
    logger.info("wrote %d sample documents to %s", rows, loc.uri)
    return loc.uri


def write_documents(path: str | Path, rows: int = 300, seed: int = 7) -> Path:
    """Materialise :func:`documents` as a local JSON lines (``.jsonl``) or Parquet (``.parquet``) file."""
    target = Path(path)
    write_documents_to(str(target.absolute()), rows, seed)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlk8s.preprocessing.samples", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        required=True,
        help="file to write, a path or URI (s3://, gs://, file://) ending in .jsonl or .parquet",
    )
    parser.add_argument("--rows", type=int, default=300, help="number of documents (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same file")
    args = parser.parse_args(argv)
    if args.rows <= 0:
        parser.error("--rows must be a positive integer")
    try:
        write_documents_to(args.output, args.rows, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
