"""The Ray Dataset plan on a real local Ray cluster: a fused pipeline and one with an actor stage both
describe the parts they wrote, one row per part, with every input row counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlk8s.preprocessing.dataset_plan import build_dataset
from mlk8s.preprocessing.parts import PartWriter
from mlk8s.preprocessing.samples import write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import parse_spec

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.ray]

USER = "tests.unit.mlk8s.preprocessing.user_transforms"


@pytest.mark.parametrize("steps", [["clean_text"], ["clean_text", f"{USER}.Tagger"]], ids=["fused", "actor"])
def test_the_dataset_rows_describe_the_written_parts(ray_client: Any, tmp_path: Path, steps: list[str]) -> None:
    source = open_input(str(write_documents(tmp_path / "d.jsonl", rows=90)))
    writer = PartWriter(str(tmp_path / "out"), "run_key=r", "a1", pa.schema([("id", pa.string())]))
    described = [r for b in build_dataset(parse_spec({"steps": steps}), source, writer).iter_batches(
        batch_size=None, batch_format="pyarrow") for r in b.to_pylist()]  # fmt: skip
    assert sum(r["input_rows"] for r in described) == 90 == sum(r["rows"] for r in described)
    assert all((tmp_path / "out" / r["path"]).stat().st_size == r["bytes"] for r in described if r["path"])
