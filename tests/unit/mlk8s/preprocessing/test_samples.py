"""Sample documents are deterministic and carry the cases the pipeline handles (HTML, text, empty)."""

from __future__ import annotations

from pathlib import Path

from mlk8s.preprocessing.samples import documents, main


def test_the_same_seed_gives_the_same_documents(tmp_path: Path) -> None:
    assert documents(40, seed=3).equals(documents(40, seed=3)) and not documents(40, seed=3).equals(documents(40, 4))
    rows = documents(200).to_pylist()
    assert (
        any(r["html"] for r in rows)
        and any(r["text"] for r in rows)
        and any(r["text"] in ("", "   ", "\n\t") for r in rows)
    )
    assert main(["--output", str(tmp_path / "d.parquet"), "--rows", "5"]) == 0
    assert main(["--output", str(tmp_path / "d.csv")]) == 2
