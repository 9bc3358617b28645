"""The CLI refuses bad input with exit code 2 before any work starts, and leaves earlier output alone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlk8s.pod_contract import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from mlk8s.preprocessing.cli import main
from mlk8s.preprocessing.samples import write_documents
from tests.unit.mlk8s.preprocessing.outputs import commit_rows

USER = "tests.unit.mlk8s.preprocessing.user_transforms"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_documents(tmp_path / "docs.jsonl", rows=40)


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """An output directory holding an earlier committed run."""
    out = tmp_path / "out"
    commit_rows(str(out), [pa.table({"id": ["x"]})], key=None)
    return out


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_help_documents_the_flags_and_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "--input",
        "--output",
        "--pipeline",
        "--input-format",
        "--ray-address",
        "RAY_ADDRESS",
        "_manifest.json",
        "--partition",
        "--txn-app-id",
        "--txn-version",
        "Delta Lake table",
        "fenced",
        "--resource-wait-s",
        "delta_version",
        "input_rows",
        "filtered_rows",
        "Exit codes",
        "non_empty_text",
        "embed",
    ):
        assert needle in text


@pytest.mark.parametrize(
    ("pipeline", "input_name", "match"),
    [
        ('{"steps": "clean_text"}', "docs", "steps: must be a non-empty list"),
        ('{"steps": ["clean_txt"]}', "docs", "unknown transform 'clean_txt'"),
        (f'{{"steps": ["{USER}.no_such"]}}', "docs", "cannot import"),
        ('{"steps": ["clean_text"]}', "missing", "does not exist"),
        (
            '{"steps": ["clean_text"], "schema": {"fields": {"topic": "int64"}}}',
            "docs",
            "does not convert to the declared schema",
        ),
        (f'{{"steps": [{{"use": "{USER}.not_a_mask", "kind": "filter"}}]}}', "docs", "a filter must return"),
        ('{"steps": ["clean_text"], "schema": {"fields": {"title": "string not null"}}}', "docs", "not null"),
        ('{"steps": [{"use": "text_features", "args": {"column": "body"}}]}', "docs", r"steps\[0\].*'body'"),
    ],
)
def test_bad_input_exits_2_before_work_and_keeps_previous_output(
    tmp_path: Path,
    docs: Path,
    previous: Path,
    pipeline: str,
    input_name: str,
    match: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _snapshot(previous)
    input_path = docs if input_name == "docs" else tmp_path / "nope.jsonl"
    code = main(["--input", str(input_path), "--output", str(previous), "--pipeline", pipeline, "--no-result"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert re.search(match, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err  # the contract's one line
    assert _snapshot(previous) == before


def test_output_inside_the_input_is_refused(tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--input", str(tmp_path), "--output", str(tmp_path / "out"), "--pipeline", '{"steps": ["clean_text"]}']
    )
    assert code == EXIT_USAGE
    assert "overlap" in capsys.readouterr().err


def test_auto_address_is_refused(docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--input", str(docs), "--output", str(tmp_path / "o"), "--ray-address", "auto"])
    assert code == EXIT_USAGE
    assert "'auto'" in capsys.readouterr().err


def test_validate_only_checks_a_good_spec_and_runs_nothing(tmp_path: Path, docs: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "steps:\n  - html_to_text\n  - clean_text\n  - text_features\n  - non_empty_text\n  - embed\n"
        "schema:\n  fields: {id: string, label: int64, n_words: int32, embedding: list<float32>}\n"
    )
    out = tmp_path / "out"
    assert main(["--input", str(docs), "--output", str(out), "--pipeline", str(spec), "--validate-only"]) == EXIT_OK
    assert not out.exists()  # the CLI wrote nothing, not even an empty table


def test_unsafe_attempt_id_is_refused(docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--input", str(docs), "--output", str(tmp_path / "o"), "--attempt-id", "../escape"])
    assert code == EXIT_USAGE
    assert "--attempt-id" in capsys.readouterr().err


def test_help_says_validate_only_runs_the_users_transforms(capsys: pytest.CaptureFixture[str]) -> None:
    """--validate-only calls user code (its side effects happen); the help said 'run nothing'."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the dry run calls your transforms in this process" in text
    assert "their side effects (files written, network calls) happen" in text


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("file", "--output: .* is a file"),
        ("below-a-file", "--output: cannot create a Delta table at .*is a file"),
        ("partition", "--partition: 'run_key' must be KEY=VALUE"),
        ("txn", "--txn-app-id and --txn-version go together"),
        ("bad-json", r"docs.jsonl: line 3: invalid JSON"),
    ],
)
def test_output_and_input_errors_exit_2_with_one_line(
    tmp_path: Path, docs: Path, setup: str, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["--input", str(docs), "--output", str(out), "--pipeline", '{"steps": ["clean_text"]}', "--no-result"]
    if setup == "file":
        out.write_text("not a directory")
    elif setup == "below-a-file":
        (tmp_path / "f").write_text("x")
        argv[3] = str(tmp_path / "f" / "table")
    elif setup == "partition":
        argv += ["--partition", "run_key"]
    elif setup == "txn":
        argv += ["--txn-app-id", "a"]
    else:
        lines = docs.read_text().splitlines()
        docs.write_text("\n".join([*lines[:2], '{"id": "broken", ', *lines[2:]]) + "\n")
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_relaunch_whose_transaction_committed_returns_the_result_without_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM just after the commit lost the result file: the relaunch rebuilt nothing from the log and redid
    the whole job. Now it returns the commit's result at once, without Ray (the input may even be gone)."""
    from mlk8s.preprocessing.commit import AppTransaction

    out = tmp_path / "out"
    txn = AppTransaction("dag/preprocess/-1/manual__1", 1)
    _, commit = commit_rows(str(out), [pa.table({"id": ["x"], "x": [1]})], txn=txn)
    monkeypatch.setenv("MLK8S_XCOM_DIR", str(tmp_path / "xcom"))
    argv = ["--input", str(tmp_path / "gone.jsonl"), "--output", str(out), "--partition", "run_key=r1"]
    argv += ["--txn-app-id", txn.app_id, "--txn-version", "1", "--ray-address", "127.0.0.1:1"]
    assert main(argv) == EXIT_OK
    result = json.loads((tmp_path / "xcom" / "return.json").read_text())
    assert result["delta_version"] == commit.version and result["output_rows"] == 1
    assert result["manifest_uri"].endswith(f"_delta_log/{commit.version:020d}.json")
    assert main([*argv[:-6], "--txn-app-id", txn.app_id, "--txn-version", "0"]) == EXIT_ERROR  # an older try
    assert "fenced" in capsys.readouterr().err


def test_a_worker_error_is_unwrapped_to_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Ray hands the driver a RayTaskError around the worker's error; an input error inside exits 2."""
    from ray.exceptions import RayTaskError

    from mlk8s.preprocessing.cli import _failed
    from mlk8s.preprocessing.errors import InputError

    def raised(exc: BaseException) -> BaseException:
        try:
            raise exc
        except BaseException as caught:
            return caught

    inner = raised(InputError("--input: /in/b.jsonl: line 7: invalid JSON (Expecting value)"))
    wrapped = RayTaskError("MapBatches(TaskStage)", "Traceback (most recent call last):\n  ...", inner)
    assert _failed(wrapped, debug=False) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() == (
        "python -m mlk8s.preprocessing: error: --input: /in/b.jsonl: line 7: invalid JSON (Expecting value) "
        "(nothing was committed; the output is as it was)"
    )
    assert _failed(raised(RuntimeError("boom\nsecond line")), debug=False) == EXIT_ERROR
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "RuntimeError: boom" in err
    assert _failed(raised(RuntimeError("boom")), debug=True) == EXIT_ERROR
    assert "Traceback" in capsys.readouterr().err


def test_a_sigterm_that_lands_just_after_the_commit_still_returns_its_result(
    tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The eviction came between the commit and the result file: exit 0 with the landed commit's result."""
    import mlk8s.preprocessing.cli as cli
    from mlk8s.preprocessing.commit import AppTransaction, commit_parts

    out = tmp_path / "out"
    txn = AppTransaction("app", 1)

    def commit_then_sigterm(args: object, plan: Any) -> dict[str, object]:
        commit_parts(plan.table, [], txn=txn, summary={"output_rows": 0, "attempt_id": "evicted"})
        raise cli.Interrupted("received signal 15")

    monkeypatch.setattr(cli, "_run_on_ray", commit_then_sigterm)
    monkeypatch.setenv("MLK8S_XCOM_DIR", str(tmp_path / "xcom"))
    argv = ["--input", str(docs), "--output", str(out), "--pipeline", '{"steps": ["clean_text"]}']
    argv += ["--partition", "run_key=r1", "--txn-app-id", "app", "--txn-version", "1"]
    assert main(argv) == EXIT_OK
    result = json.loads((tmp_path / "xcom" / "return.json").read_text())
    assert result["attempt_id"] == "evicted" and result["delta_version"] == 1
