"""nightly_retrain through ``dag.test()`` with no logical date, on a real local Ray cluster and real torch.

What the DAG promises: an unknown conf key fails the run at its first task and nothing else starts; each run
writes under its own run key; the model Asset gets an event only from ``publish``, which runs only when the
evaluation says the candidate is not worse; ``live_model`` says which model is live. (The same DAG under the
real scheduler, triggered through the REST API: tests/integration/test_make_up.py.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
SMALL = {"documents": 40, "epochs": 2}


@pytest.fixture(scope="module")
def dag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags" / "nightly_retrain.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["nightly_retrain"]


@pytest.fixture
def ray_env(monkeypatch: pytest.MonkeyPatch, ray_cluster: Any) -> Iterator[None]:
    from mlk8s.ray_auth import process_token

    host, port = ray_cluster.address.rsplit(":", 1)
    monkeypatch.setenv(
        "AIRFLOW_CONN_RAY_DEFAULT", json.dumps({"conn_type": "generic", "host": host, "port": int(port)})
    )
    monkeypatch.setenv("RAY_AUTH_TOKEN", process_token())  # the worker's environment: the pod's Secret locally
    yield


def outcome(dr: Any) -> tuple[dict[str, str], dict[str, Any]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, key="return_value")
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return states, xcoms


def asset_events(run_id: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "document_classifier", AssetEvent.source_run_id == run_id)
        )
        return [dict(row.extra or {}) for row in rows]


def assert_reads_only_its_partition(dr: Any, xcoms: dict[str, Any], data_root: Path) -> None:
    """Preprocessing replaced this run's partition of the one features table; training and evaluation read that
    partition at the Delta version preprocessing committed, never the other runs' rows."""
    from deltalake import DeltaTable

    from mlk8s_airflow.run_keys import run_key

    committed, train = xcoms["preprocess"], xcoms["train"]
    table = DeltaTable(str(data_root / "features"))
    assert table.metadata().partition_columns == ["run_key"]
    mine = table.to_pyarrow_table(filters=[("run_key", "=", run_key(dr.run_id))])
    assert committed["partition"] == {"run_key": run_key(dr.run_id)}
    assert mine.num_rows == committed["output_rows"] > 0
    assert train["data"]["kind"] == "delta" and train["data"]["partition"] == committed["partition"]
    assert train["data"]["version"] == committed["delta_version"] and train["data"]["rows"] == mine.num_rows
    # The trainer keeps what the task describes (its split among it) in model.json, not in the XCom.
    import json

    info = json.loads((Path(train["output_uri"]) / "model.json").read_text())
    assert xcoms["evaluate"]["held_out_rows"] == info["task_info"]["held_out_rows"]


def _partitions(data_root: Path) -> list[dict[str, str]]:
    from deltalake import DeltaTable

    runs = DeltaTable(str(data_root / "features")).to_pyarrow_table(columns=["run_key"]).column("run_key")
    return [{"run_key": key} for key in sorted(set(runs.to_pylist()))]


def test_an_unknown_conf_key_fails_the_run_before_any_work(dag: Any, tmp_path: Path) -> None:
    dr = dag.test(logical_date=None, run_conf={"data_root": str(tmp_path), "epoch": 3})
    states, _ = outcome(dr)
    assert states["check_params"] == "failed"
    assert {s for t, s in states.items() if t != "check_params"} == {"upstream_failed"}
    assert str(dr.state) == "failed"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_wrong_value_is_refused_before_the_run_exists(dag: Any, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="epochs"):
        dag.test(logical_date=None, run_conf={"data_root": str(tmp_path), "epochs": -1})


def test_runs_publish_only_a_model_that_is_not_worse_and_say_which_is_live(
    dag: Any, tmp_path: Path, ray_env: None
) -> None:
    registry = tmp_path / "models" / "document_classifier"
    conf = {"data_root": str(tmp_path), **SMALL}

    # Run 1, no logical date: nothing is live, the candidate is published and the Asset gets its event.
    first = dag.test(logical_date=None, run_conf=conf)
    states, xcoms = outcome(first)
    assert str(first.state) == "success", states
    assert states["publish"] == "success" and states["live_model"] == "success"
    assert xcoms["evaluate"]["decision"] == "publish" and xcoms["evaluate"]["published"] is None
    live = json.loads((registry / "published.json").read_text())
    assert xcoms["live_model"]["candidate_published"] is True
    assert xcoms["live_model"]["live"]["weights_sha256"] == live["weights_sha256"]
    assert [e["weights_sha256"] for e in asset_events(first.run_id)] == [live["weights_sha256"]]
    run_dirs = sorted(p.name for p in (tmp_path / "nightly_retrain" / "runs").iterdir())
    assert len(run_dirs) == 1 and live["run_key"] == run_dirs[0]
    assert_reads_only_its_partition(first, xcoms, tmp_path)
    first_committed = xcoms["preprocess"]

    # Run 2, the same day, another seed (the same seed and data train the very same weights): the live model was trained with other shapes (its pointer says hidden=16), so it cannot
    # be scored on this data; it stays live, publish is skipped and no Asset event is emitted.
    pointer = registry / "published.json"
    pointer.write_text(json.dumps({**live, "task_options": {"hidden": "16"}}))
    second = dag.test(logical_date=None, run_conf={**conf, "seed": 1})
    states, xcoms = outcome(second)
    assert str(second.state) == "success", states
    assert xcoms["evaluate"]["decision"] == "keep" and "cannot be scored" in xcoms["evaluate"]["reason"]
    assert states["publish"] == "skipped" and states["live_model"] == "success"
    assert xcoms["live_model"]["candidate_published"] is False
    assert xcoms["live_model"]["live"]["weights_sha256"] == live["weights_sha256"]
    assert asset_events(second.run_id) == []
    assert json.loads(pointer.read_text())["weights_sha256"] == live["weights_sha256"]
    # Its own data, beside run 1's: two runs of a day never overwrite each other.
    assert len(list((tmp_path / "nightly_retrain" / "runs").iterdir())) == 2
    assert_reads_only_its_partition(second, xcoms, tmp_path)
    assert xcoms["train"]["data"]["version"] > first_committed["delta_version"]
    assert first_committed["partition"] in _partitions(tmp_path)  # run 1's rows are kept

    # Run 3 forces the publication: the pointer moves by compare-and-swap and names what it replaced.
    third = dag.test(logical_date=None, run_conf={**conf, "seed": 2, "force_publish": True})
    states, xcoms = outcome(third)
    assert str(third.state) == "success", states
    moved = json.loads(pointer.read_text())
    assert moved["replaces_sha256"] == live["weights_sha256"] and moved["run_key"] != live["run_key"]
    assert len(asset_events(third.run_id)) == 1
    assert len(list((registry / "history").iterdir())) == 2
