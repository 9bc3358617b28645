"""The plan made before work: a committed transaction short-cuts everything after the flags, an unwritable
output is found by a probe, bad flags are refused, and --validate-only creates nothing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from mlk8s.preprocessing.cli import build_parser
from mlk8s.preprocessing.commit import AppTransaction
from mlk8s.preprocessing.errors import OutputError
from mlk8s.preprocessing.plan import make_plan, probe_writable
from mlk8s.preprocessing.samples import write_documents
from tests.unit.mlk8s.preprocessing.outputs import commit_rows, table_for

SPEC = '{"steps": ["clean_text"]}'


def _args(*argv: str) -> object:
    return build_parser().parse_args(list(argv))


def test_a_committed_transaction_returns_its_commit_without_reading_the_input(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    _, commit = commit_rows(out, [pa.table({"id": ["a"], "x": [1]})], txn=AppTransaction("app", 2))
    plan = make_plan(_args("--input", str(tmp_path / "gone"), "--output", out, "--partition", "run_key=r1",
                           "--txn-app-id", "app", "--txn-version", "2"))  # fmt: skip
    assert plan.earlier == commit and plan.source is None


def test_validate_only_creates_nothing_and_a_run_creates_the_table(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "d.jsonl", rows=10)
    out = tmp_path / "t"
    plan = make_plan(_args("--input", str(docs), "--output", str(out), "--pipeline", SPEC, "--validate-only"))
    assert not out.exists() and plan.earlier is None
    plan = make_plan(_args("--input", str(docs), "--output", str(out), "--pipeline", SPEC))
    assert (out / "_delta_log").is_dir() and plan.table.schema.names[:2] == ["id", "label"]
    assert sorted(p.name for p in out.iterdir()) == ["_delta_log"]  # the write probe cleaned up after itself


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--attempt-id", "../x"], "--attempt-id"),
        (["--ray-address", "auto"], "'auto'"),
        (["--resource-wait-s", "0"], "--resource-wait-s"),
        (["--vacuum-retention-hours", "-1"], "--vacuum-retention-hours"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_read(tmp_path: Path, flags: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_plan(_args("--input", str(tmp_path / "gone"), "--output", str(tmp_path / "t"), *flags))


def test_an_unwritable_partition_directory_is_found_by_the_probe(tmp_path: Path) -> None:
    table = table_for(str(tmp_path / "t"))
    (tmp_path / "t" / "run_key=r1").write_text("a file where the partition's directory goes")
    with pytest.raises(OutputError, match="cannot write under"):
        probe_writable(table)
