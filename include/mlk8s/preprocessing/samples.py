"""Deterministic sample documents for the demo, the tests and the benchmark generator.

Three topics, each with its own vocabulary, so a classifier trained on the embeddings (``label``) has
something real to learn. Some records are HTML (with scripts, entities and markup to strip), some plain
text, and a few are empty or whitespace-only, which the default pipeline filters out.

    python -m mlk8s.preprocessing.samples --output /tmp/docs.jsonl [--rows 300] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import pyarrow as pa

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


def write_documents(path: str | Path, rows: int = 300, seed: int = 7) -> Path:
    """Materialise :func:`documents` as JSON lines (``.jsonl``) or Parquet (``.parquet``)."""
    target = Path(path)
    table = documents(rows, seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, target)
    elif target.suffix in (".jsonl", ".ndjson"):
        with target.open("w") as fh:
            for record in table.to_pylist():
                fh.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
    else:
        raise ValueError(f"--output: {str(target)!r} must end in .jsonl or .parquet")
    logger.info("wrote %d sample documents to %s", rows, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlk8s.preprocessing.samples", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="file to write: .jsonl or .parquet")
    parser.add_argument("--rows", type=int, default=300, help="number of documents (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same file")
    args = parser.parse_args(argv)
    if args.rows <= 0:
        parser.error("--rows must be a positive integer")
    try:
        write_documents(args.output, args.rows, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
