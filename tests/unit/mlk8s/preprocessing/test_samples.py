"""Sample documents are deterministic and carry the cases the pipeline handles (HTML, text, empty)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

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


def test_the_output_may_be_a_uri_and_lands_there_not_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # nightly_retrain's extract step gets {data_root}/..., a URI in a cluster (s3://, gs://, file://).
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["--output", f"file://{tmp_path}/runs/r1/raw/d.parquet", "--rows", "7"]) == 0
    assert pq.read_table(tmp_path / "runs" / "r1" / "raw" / "d.parquet").equals(documents(7))
    assert list(cwd.iterdir()) == []  # not a relative "file:/..." directory
    assert main(["--output", f"file://{tmp_path}/d.csv"]) == 2
    assert "d.csv" in capsys.readouterr().err and not (tmp_path / "d.csv").exists()
