"""preprocess_on_demand through ``dag.test()``: the form's choices become the pipeline that runs on a real local Ray
cluster, a bad spec fails the run before any Ray work, naming the field, and an unknown key fails it at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.airflow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data_root")


@pytest.fixture(scope="module")
def dag(airflow_db: Path, data_root: Path) -> Iterator[Any]:
    import os

    from airflow.dag_processing.dagbag import DagBag

    before = os.environ.get("MLK8S_DATA_ROOT")
    os.environ["MLK8S_DATA_ROOT"] = str(data_root)  # read once, when the DAG file is parsed
    try:
        bag = DagBag(str(REPO / "dags" / "preprocess_on_demand.py"))
    finally:
        if before is None:
            os.environ.pop("MLK8S_DATA_ROOT")
        else:
            os.environ["MLK8S_DATA_ROOT"] = before
    assert not bag.import_errors, bag.import_errors
    yield bag.dags["preprocess_on_demand"]


@pytest.fixture
def ray_env(monkeypatch: pytest.MonkeyPatch, ray_cluster: Any) -> Iterator[None]:
    from mlk8s.ray_auth import process_token

    host, port = ray_cluster.address.rsplit(":", 1)
    monkeypatch.setenv(
        "AIRFLOW_CONN_RAY_DEFAULT", json.dumps({"conn_type": "generic", "host": host, "port": int(port)})
    )
    monkeypatch.setenv("RAY_AUTH_TOKEN", process_token())
    yield


def states(dr: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def test_a_bad_spec_fails_at_the_pipeline_task_naming_the_field(dag: Any, tmp_path: Path) -> None:
    dr = dag.test(
        logical_date=None,
        run_conf={
            "pipeline": "spec",
            "pipeline_spec": {"steps": [{"use": "no_such_step"}]},
            "output_uri": str(tmp_path),
        },
    )
    got = states(dr)
    assert got["pipeline"] == "failed" and got["preprocess"] == "upstream_failed", got
    assert got["write_samples"] == "upstream_failed", got  # no sample is written for a spec that cannot run
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_key_fails_the_run_at_once(dag: Any, tmp_path: Path) -> None:
    dr = dag.test(logical_date=None, run_conf={"input": "/data", "output_uri": str(tmp_path)})
    got = states(dr)
    assert got["check_params"] == "failed"
    assert {s for t, s in got.items() if t != "check_params"} == {"upstream_failed"}


@pytest.mark.ray
def test_samples_without_embeddings_half_the_rows(dag: Any, data_root: Path, tmp_path: Path, ray_env: None) -> None:
    from mlk8s.preprocessing import read_output

    out = tmp_path / "out"
    dr = dag.test(
        logical_date=None,
        run_conf={
            "sample_documents": 200,
            "pipeline": "text_only",
            "embeddings": False,
            "sample_fraction": 0.5,
            "output_uri": str(out),
        },
    )
    got = states(dr)
    assert str(dr.state) == "success", got
    table = read_output(str(out))
    assert "embedding" not in table.column_names and "n_words" not in table.column_names  # text_only, no embed
    assert 60 < table.num_rows < 100  # about half of the ~190 non-empty documents
    ids = set(table.column("id").to_pylist())
    # The samples were written under this run's own key, inside the data root.
    assert len(list(data_root.glob("preprocess_on_demand/runs/*/input/documents.parquet"))) == 1
    # A second run over the same (deterministic) documents keeps the same sample.
    again = tmp_path / "again"
    dr2 = dag.test(
        logical_date=None,
        run_conf={
            "sample_documents": 200,
            "pipeline": "text_only",
            "embeddings": False,
            "sample_fraction": 0.5,
            "output_uri": str(again),
        },
    )
    assert str(dr2.state) == "success", states(dr2)
    assert set(read_output(str(again)).column("id").to_pylist()) == ids
