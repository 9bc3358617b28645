"""The Ray pipeline on a real local Ray cluster (separate node processes, token auth) against the
single-process pyarrow reference: the same rows read back by deltalake, Polars, Ray Data and read_output,
exactly one committed copy of a partition after a rerun, and the same output when a Ray worker is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from mlk8s.local_ray import LocalRayCluster
from mlk8s.preprocessing.output import read_output
from mlk8s.preprocessing.reference import run_reference
from mlk8s.preprocessing.run import run_pipeline
from mlk8s.preprocessing.samples import documents, write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import load_spec, parse_spec
from mlk8s.preprocessing.table import Partition
from tests.unit.mlk8s.preprocessing.outputs import commit_rows

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.ray]

USER = "tests.unit.mlk8s.preprocessing.user_transforms"
FEATURES_SPEC: dict[str, Any] = {
    "steps": [
        "html_to_text",
        "clean_text",
        "text_features",
        "non_empty_text",
        {"use": f"{USER}.keep_labels", "kind": "filter", "args": {"labels": [0, 2]}},
    ],
    "schema": {"fields": {"id": "string", "label": "int64", "text": "string", "n_words": "int32"}, "extra": "keep"},
}


def _by_id(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def parquet_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 Parquet files of 400 documents each (several blocks, so tasks run in parallel)."""
    root = tmp_path_factory.mktemp("docs")
    for i in range(8):
        pq.write_table(documents(400, seed=100 + i), root / f"part-{i:02d}.parquet")
    return root


def test_default_pipeline_with_embeddings_equals_the_reference(ray_client: Any, tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs.jsonl", rows=120)
    spec, source = load_spec(None), open_input(str(docs))
    result = run_pipeline(spec, source, str(tmp_path / "out"))
    got, want = read_output(str(tmp_path / "out")), run_reference(spec, source)

    assert result["input_rows"] == 120
    assert result["output_rows"] == want.num_rows == got.num_rows
    assert result["filtered_rows"] == 120 - want.num_rows > 0
    assert got.schema.field("embedding").type == pa.list_(pa.float32())
    got_rows, want_rows = _by_id(got), _by_id(want)
    for g, w in zip(got_rows, want_rows):
        ge, we = np.array(g.pop("embedding")), np.array(w.pop("embedding"))
        assert ge.shape == (384,)
        np.testing.assert_allclose(ge, we, atol=2e-5)
        assert g == w
    # id and label pass through unchanged; no html left; every text non-empty
    assert {r["id"]: r["label"] for r in got_rows} == {
        r["id"]: r["label"] for r in documents(120).to_pylist() if r["id"] in {g["id"] for g in got_rows}
    }
    assert "html" not in got.column_names and all(r["text"] for r in got_rows)
    commit = next(h for h in DeltaTable(str(tmp_path / "out")).history() if h["version"] == result["delta_version"])
    assert commit["mlk8s.summary"]["output_rows"] == got.num_rows
    assert commit["mlk8s.summary"]["content_hash"] == result["content_hash"]


def test_features_pipeline_read_by_every_engine_equals_reference_and_rerun_leaves_one_copy(
    ray_client: Any, parquet_docs: Path, tmp_path: Path
) -> None:
    spec, source = parse_spec(FEATURES_SPEC), open_input(str(parquet_docs))
    out = str(tmp_path / "out")
    day1, day2 = Partition.parse(["run_key=day1"]), Partition.parse(["run_key=day2"])
    run_pipeline(spec, source, out, partition=day1)
    first = run_pipeline(spec, source, out, partition=day2)
    want = _by_id(run_reference(spec, source))
    assert first["partition"] == {"run_key": "day2"} and first["table_uri"] == out

    def day2_rows(table: pa.Table) -> list[dict[str, Any]]:
        rows = [r for r in table.to_pylist() if r.pop("run_key") == "day2"]
        return sorted(rows, key=lambda r: r["id"])

    assert day2_rows(pa.table(DeltaTable(out).to_pyarrow_table())) == want
    assert day2_rows(pl.read_delta(out).to_arrow()) == want
    assert day2_rows(pa.Table.from_pylist(ray_client.data.read_delta(out).take_all())) == want
    assert day2_rows(read_output(out)) == want

    second = run_pipeline(spec, source, out, partition=day2)  # the same task run again
    assert second["delta_version"] == first["delta_version"] + 1
    got = read_output(out, partition={"run_key": "day2"})
    assert got.num_rows == len(want) == second["output_rows"] == first["output_rows"]
    assert len(set(got["id"].to_pylist())) == got.num_rows  # exactly one copy
    assert read_output(out, partition={"run_key": "day1"}).num_rows == len(want)  # the other partition: untouched
    assert day2_rows(read_output(out)) == want


@pytest.mark.parametrize("with_actor", [False, True], ids=["fused", "with-actor-stage"])
def test_a_jsonl_file_cut_into_byte_ranges_is_read_exactly_once(
    ray_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_actor: bool
) -> None:
    """One JSON lines file, cut into ranges smaller than some of its lines: ranges that hold no line of their
    own, lines that run across several ranges. Every record comes out once, as the reference computes it."""
    from mlk8s.preprocessing import work_units

    rows = documents(60, seed=7).to_pylist()
    for row in rows[::7]:
        row["text"] = (row["text"] or "long ") * 400  # lines of several KB, across many ranges
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setattr(work_units, "JSONL_UNIT_BYTES", 1000)
    source = open_input(str(path))
    units = work_units.work_units(source)
    assert len(units) == -(-path.stat().st_size // 1000) > 60

    steps: list[Any] = list(FEATURES_SPEC["steps"])
    if with_actor:
        steps.append({"use": f"{USER}.Tagger", "args": {"tag": "x"}, "concurrency": 1})
    spec = parse_spec({"steps": steps})
    result = run_pipeline(spec, source, str(tmp_path / "out"))
    got, want = read_output(str(tmp_path / "out")), run_reference(spec, source)
    assert result["input_rows"] == 60
    assert _by_id(got) == _by_id(want) and got.num_rows == result["output_rows"] > 0
    if with_actor:
        assert set(got["tag"].to_pylist()) == {"x"}


def test_killing_a_ray_worker_process_mid_run_gives_the_same_output(
    ray_client: Any, parquet_docs: Path, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    slow = {"use": f"{USER}.slow_identity", "args": {"seconds": 1.5, "marker_dir": str(markers)}}
    spec, source = (
        parse_spec({**FEATURES_SPEC, "steps": [*FEATURES_SPEC["steps"], slow]}),
        open_input(str(parquet_docs)),
    )
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = run_pipeline(spec, source, str(tmp_path / "out"))
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    # The plan's dry run calls the transform in this process first (its marker names this pid): never the victim.
    me = os.getpid()

    def in_a_ray_worker() -> set[int]:
        return {int(p.name.split("-")[0]) for p in markers.iterdir()} - {me}

    deadline = time.monotonic() + 120
    while not in_a_ray_worker() and time.monotonic() < deadline and runner.is_alive():
        time.sleep(0.05)
    assert in_a_ray_worker(), f"no Ray worker ran slow_identity within 120 s: {outcome.get('error')!r}"
    victim = min(in_a_ray_worker())  # a Ray worker inside its task (sleeping 1.5 s)
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=240)

    assert "error" not in outcome, outcome.get("error")
    pids = {int(p.name.split("-")[0]) for p in markers.iterdir()}
    assert pids - {victim, me}, "the killed worker's task was never run again"
    result = outcome["result"]
    assert result["input_rows"] == 8 * 400
    # slow_identity changes nothing, so the reference can skip it (and its sleeps).
    assert _by_id(read_output(str(tmp_path / "out"))) == _by_id(run_reference(parse_spec(FEATURES_SPEC), source))


def test_cli_runs_against_the_cluster_named_by_ray_address(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs.jsonl", rows=120)
    spec = tmp_path / "spec.yaml"
    spec.write_text("steps: [html_to_text, clean_text, text_features, non_empty_text]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(ray_cluster.client_env())
    env["MLK8S_XCOM_DIR"] = str(tmp_path / "xcom")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlk8s.preprocessing",
            "--input",
            str(docs),
            "--output",
            str(tmp_path / "out"),
            "--pipeline",
            str(spec),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "xcom" / "return.json").read_text())
    keys = {"input_rows", "output_rows", "filtered_rows", "duration_s", "output_uri", "manifest_uri", "delta_version"}
    assert keys | {"table_uri", "partition", "content_hash", "attempt_id"} <= set(result)
    assert result["input_rows"] == 120
    assert result["output_rows"] == read_output(str(tmp_path / "out")).num_rows
    assert result["manifest_uri"] == str(tmp_path / "out" / "_delta_log" / f"{result['delta_version']:020d}.json")
    assert f"connecting to ray pool {ray_cluster.address}" in proc.stderr
    assert "done: input_rows=120" in proc.stderr


def test_sigterm_mid_run_exits_75_and_keeps_the_previous_output(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    """An evicted driver pod: SIGTERM mid-run commits nothing, exits 75 (relaunch), earlier output intact."""
    docs = write_documents(tmp_path / "docs.jsonl", rows=60)
    out = tmp_path / "out"
    # The earlier output has the pipeline's own columns (another schema is refused before any work).
    earlier = run_reference(parse_spec({"steps": ["clean_text"]}), open_input(str(docs))).slice(0, 1)
    earlier = earlier.set_column(earlier.schema.get_field_index("id"), "id", pa.array(["kept"]))
    commit_rows(str(out), [earlier], key=None)
    before = DeltaTable(str(out)).version()
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = json.dumps(
        {"steps": ["clean_text", {"use": f"{USER}.slow_identity", "args": {"seconds": 5, "marker_dir": str(markers)}}]}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(ray_cluster.client_env())
    env["MLK8S_XCOM_DIR"] = str(tmp_path / "xcom")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlk8s.preprocessing", "--input", str(docs), "--output", str(out), "--pipeline", spec],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120

    def in_a_ray_worker() -> bool:  # the driver's own dry run leaves a marker too: wait for a worker's
        return any(int(p.name.split("-")[0]) != proc.pid for p in markers.iterdir())

    while not in_a_ray_worker() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, output[-3000:]
    assert "interrupted" in output
    assert DeltaTable(str(out)).version() == before
    assert read_output(str(out))["id"].to_pylist() == ["kept"]
    assert not (tmp_path / "xcom" / "return.json").exists()
