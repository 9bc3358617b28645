"""A property test of ``python -m mlk8s.preprocessing`` over its flags and inputs: the pod contract holds.

Most examples run in this process (``main(argv)``) and stop before Ray: exit 0 (valid, ``--validate-only``),
2 (bad input), or 1 only when the transaction is an older try's (fenced); never a traceback; the table a
previous run committed keeps its version and its rows. A few examples run the real driver process on the
Ray cluster with a fault injected (SIGTERM mid-run, bad JSON found by a worker, a relaunch after the commit):
exit 0, 2 or 75, and nothing committed is lost. The tally of what was tried and what held is printed at the end
(and written to $MLK8S_FUZZ_TALLY when set).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlk8s.local_ray import LocalRayCluster
from mlk8s.preprocessing.cli import main
from mlk8s.preprocessing.commit import AppTransaction
from mlk8s.preprocessing.output import read_output
from mlk8s.preprocessing.reference import run_reference
from mlk8s.preprocessing.samples import write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import parse_spec
from tests.unit.mlk8s.preprocessing.outputs import commit_rows, legacy_output

pytest_plugins = ["tests.integration.ray_fixtures"]

USER = "tests.unit.mlk8s.preprocessing.user_transforms"
APP = "mlk8s/fuzz/preprocess/-1/manual__1"
GOOD_SPEC = '{"steps": ["html_to_text", "clean_text", "text_features", "non_empty_text"]}'

INPUTS = ["good", "missing", "empty-file", "bad-json", "mixed", "conflicting-parquet", "unknown-ext"]
PIPELINES = {
    "good": GOOD_SPEC,
    "default": None,
    "unknown": '{"steps": ["clean_txt"]}',
    "not-json": "{'steps': 1}",
    "bad-kind": '{"steps": [{"use": "clean_text", "kind": "actor"}]}',
    "bad-type": '{"steps": ["clean_text"], "schema": {"fields": {"id": "float16"}}}',
    "bad-filter": f'{{"steps": [{{"use": "{USER}.not_a_mask", "kind": "filter"}}]}}',
    "evolve-not-bool": '{"steps": ["clean_text"], "schema": {"evolve": "yes"}}',
}
OUTPUTS = ["committed", "new", "file", "legacy", "busy", "below-a-file"]
PARTITIONS = [None, "run_key=manual__1", "run_key=other", "run_key", "Bad=1", "run_key=a/b"]
TXNS = [None, ("app", "1"), (APP, "0"), (APP, "5"), ("has space", "1"), (APP, "-1"), (APP, None), (APP, "x")]
EXTRA = [[], ["--attempt-id", "../x"], ["--attempt-id", "ok-1"], ["--resource-wait-s", "0"],
         ["--vacuum-retention-hours", "-1"], ["--input-format", "csv"], ["--input-format", "jsonl"],
         ["--ray-address", "auto"], ["--log-level", "debug"], ["--no-such-flag"]]  # fmt: skip


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, int]]:
    counts = {"bad_inputs_tried": 0, "bad_inputs_held": 0, "faults_injected": 0, "faults_held": 0, "valid_runs": 0}
    yield counts
    print("\nfuzz tally:", json.dumps(counts))
    if os.environ.get("MLK8S_FUZZ_TALLY"):
        Path(os.environ["MLK8S_FUZZ_TALLY"]).write_text(json.dumps(counts))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs of every kind, and a table a previous run committed (partition run_key=manual__1, try 1)."""
    root = tmp_path_factory.mktemp("fuzz")
    write_documents(root / "good.jsonl", rows=80)
    (root / "empty-file").mkdir()
    write_documents(root / "empty-file" / "a.jsonl", rows=10)
    (root / "empty-file" / "b.jsonl").write_bytes(b"")
    (root / "bad-json").mkdir()
    write_documents(root / "bad-json" / "a.jsonl", rows=10)
    (root / "bad-json" / "b.jsonl").write_text('{"id": "x"}\n{"id": \n')
    (root / "mixed").mkdir()
    write_documents(root / "mixed" / "a.jsonl", rows=5)
    write_documents(root / "mixed" / "b.parquet", rows=5)
    (root / "conflicting-parquet").mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), root / "conflicting-parquet" / "a.parquet")
    pq.write_table(pa.table({"id": ["b"], "text": [1]}), root / "conflicting-parquet" / "b.parquet")
    (root / "unknown-ext").mkdir()
    (root / "unknown-ext" / "a.csv").write_text("id\n1\n")
    legacy_output(root / "legacy", [pa.table({"id": ["old"]})])
    (root / "busy").mkdir()
    (root / "busy" / "notes.txt").write_text("x")
    (root / "file").write_text("x")
    features = run_reference(parse_spec(json.loads(GOOD_SPEC)), open_input(str(root / "good.jsonl")))
    commit_rows(str(root / "committed"), [features], value="manual__1", txn=AppTransaction(APP, 1))
    return root


def _snapshot(table: Path) -> tuple[int, list[Any]]:
    return DeltaTable(str(table)).version(), sorted(read_output(str(table)).to_pylist(), key=str)


def _argv(world: Path, case: dict[str, Any]) -> list[str]:
    inputs = {"good": world / "good.jsonl", "missing": world / "nope.jsonl"}
    argv = ["--input", str(inputs.get(case["input"], world / case["input"]))]
    outputs = {"new": world / "new" / case["id"], "below-a-file": world / "file" / "t"}
    argv += ["--output", str(outputs.get(case["output"], world / case["output"]))]
    if case["pipeline"] is not None:
        argv += ["--pipeline", case["pipeline"]]
    if case["partition"] is not None:
        argv += ["--partition", case["partition"]]
    app, version = case["txn"] or (None, None)
    argv += ["--txn-app-id", app] if app is not None else []
    argv += ["--txn-version", version] if version is not None else []
    return [*argv, *case["extra"], "--no-result", "--validate-only"]


GOOD_EXTRA = ([], ["--attempt-id", "ok-1"], ["--input-format", "jsonl"], ["--log-level", "debug"])


def _is_valid(case: dict[str, Any]) -> bool:
    """Whether every part of the case is good input (then the run must validate: exit 0)."""
    partitions = (
        ("run_key=manual__1", "run_key=other")
        if case["output"] == "committed"
        else (None, "run_key=manual__1", "run_key=other")
    )
    return (
        case["input"] == "good"
        and (case["pipeline"] == GOOD_SPEC or (case["pipeline"] is None and case["output"] == "new"))
        and case["output"] in ("committed", "new")
        and case["partition"] in partitions
        and case["txn"] in (None, ("app", "1"), (APP, "5"))
        and case["extra"] in GOOD_EXTRA
    )


def _valid_case(draw: Any) -> dict[str, Any]:
    output = draw(st.sampled_from(["committed", "new"]))
    partitions = ["run_key=manual__1", "run_key=other"] + ([None] if output == "new" else [])
    return {
        "input": "good",
        # The committed table holds GOOD_SPEC's schema: the default pipeline's (with embeddings) is another.
        "pipeline": GOOD_SPEC if output == "committed" else draw(st.sampled_from([GOOD_SPEC, None])),
        "output": output,
        "partition": draw(st.sampled_from(partitions)),
        "txn": draw(st.sampled_from([None, ("app", "1"), (APP, "5")])),
        "extra": list(draw(st.sampled_from(GOOD_EXTRA))),
    }


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    """A quarter all-good (they must validate), the rest any mix of good and bad parts."""
    if draw(st.integers(0, 3)) == 0:
        case = _valid_case(draw)
    else:
        case = {
            "input": draw(st.sampled_from(INPUTS)),
            "pipeline": draw(st.sampled_from(list(PIPELINES.values()))),
            "output": draw(st.sampled_from(OUTPUTS)),
            "partition": draw(st.sampled_from(PARTITIONS)),
            "txn": draw(st.sampled_from(TXNS)),
            "extra": draw(st.sampled_from(EXTRA)),
        }
    return {**case, "id": str(draw(st.integers(0, 10**9)))}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_the_cli_keeps_the_contract_over_its_flags(world: Path, tally: dict[str, int], case: dict[str, Any]) -> None:
    output, txn, extra = case["output"], case["txn"], case["extra"]
    before = _snapshot(world / "committed")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(_argv(world, case))
        except SystemExit as exc:  # argparse: bad flag syntax
            code = int(exc.code or 0)
    text = err.getvalue()
    debug = "--log-level" in extra
    held = code in (0, 1, 2) and (debug or "Traceback" not in text) and _snapshot(world / "committed") == before
    if code == 1:  # only a transaction older than the committed one fences before work
        held = held and "fenced" in text and txn == (APP, "0") and output == "committed"
    if _is_valid(case):
        tally["valid_runs"] += 1
        held = held and code == 0
    else:
        tally["bad_inputs_tried"] += 1
        held = held and code != 0
        tally["bad_inputs_held"] += int(held)
    assert held, (case, code, text[-2000:])
    if output == "new":
        shutil.rmtree(world / "new" / case["id"], ignore_errors=True)


def _driver(cluster: LocalRayCluster, tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(cluster.client_env())
    env["MLK8S_XCOM_DIR"] = str(tmp / "xcom")
    return subprocess.Popen([sys.executable, "-m", "mlk8s.preprocessing", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


@pytest.mark.slow
@pytest.mark.ray
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fault=st.sampled_from(["sigterm-mid-run", "bad-json-in-a-later-file", "relaunch-after-commit", "none"]))
def test_the_driver_keeps_the_contract_under_faults(
    ray_cluster: LocalRayCluster, world: Path, tally: dict[str, int], tmp_path_factory: pytest.TempPathFactory,
    fault: str,
) -> None:  # fmt: skip
    tmp = tmp_path_factory.mktemp("fault")
    out = tmp / "table"
    shutil.copytree(world / "committed", out)
    before = _snapshot(out)
    docs = tmp / "in"
    write_documents(docs / "a.jsonl", rows=120)
    if fault == "bad-json-in-a-later-file":
        lines = [json.dumps({"id": f"z{i}", "text": "fine"}) for i in range(40)]
        (docs / "b.jsonl").write_text("\n".join([*lines[:30], '{"id": "z30", "text": ', *lines[31:]]) + "\n")
    version = "1" if fault == "relaunch-after-commit" else "2"
    argv = ["--input", str(docs), "--output", str(out), "--pipeline", GOOD_SPEC, "--partition", "run_key=manual__1",
            "--txn-app-id", APP, "--txn-version", version]  # fmt: skip
    proc = _driver(ray_cluster, tmp, *argv)
    if fault == "sigterm-mid-run":
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline and not (out / "run_key=manual__1").exists():
            time.sleep(0.05)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=400)
    expected = {
        "sigterm-mid-run": (75, 0),
        "bad-json-in-a-later-file": (2,),
        "relaunch-after-commit": (0,),
        "none": (0,),
    }
    after = _snapshot(out)
    unchanged = after == before
    if proc.returncode == 0 and fault in ("none", "sigterm-mid-run"):
        unchanged = after[0] == before[0] + 1 and len(after[1]) > 0  # a new complete version; the old one reads
        unchanged = unchanged and sorted(read_output(str(out), version=before[0]).to_pylist(), key=str) == before[1]
    no_traceback = "Traceback" not in output.split("error:")[-1]
    last = output.strip().splitlines()[-1] if output.strip() else ""
    held = proc.returncode in expected[fault] and unchanged and no_traceback
    if fault == "bad-json-in-a-later-file":
        held = held and "b.jsonl: line 31: invalid JSON" in last
    if fault != "none":
        tally["faults_injected"] += 1
        tally["faults_held"] += int(held)
    assert held, (fault, proc.returncode, output[-3000:])
