"""The pages' reads of the metadata DB, against real runs of fixture DAGs (``dag.test()``, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mlk8s_airflow.ui import store
from tests.unit.mlk8s_airflow.ui.runs import FixtureRun

pytestmark = [pytest.mark.airflow]


@pytest.fixture
def session(airflow_db: object) -> Iterator[Any]:
    from airflow.utils.session import create_session

    with create_session() as s:
        yield s


def test_task_instance_and_its_xcoms(session: Any, pool_sensor_run: FixtureRun) -> None:
    ti = store.task_instance(session, pool_sensor_run.dag_id, pool_sensor_run.run_id, "size_ray_pool")
    assert ti is not None and ti.state == "failed" and ti.try_number == 1
    assert ti.start is not None and ti.end is not None and ti.start <= ti.end and not ti.unfinished
    history = store.xcom_value(
        session, pool_sensor_run.dag_id, pool_sensor_run.run_id, "size_ray_pool", "ray_pool_history"
    )
    assert [p["pool"] for p in history] == [0, 2, 2]
    assert store.xcom_value(session, pool_sensor_run.dag_id, pool_sensor_run.run_id, "size_ray_pool", "nope") is None
    assert store.task_instance(session, pool_sensor_run.dag_id, "no-run", "size_ray_pool") is None


def test_sensor_status_of_the_latest_run(session: Any, pool_sensor_run: FixtureRun) -> None:
    status = store.sensor_status(session, pool_sensor_run.dag_id, "size_ray_pool", None)
    assert status.dag_exists and status.sensor is not None
    assert status.sensor.run_id == store.latest_run_id(session, pool_sensor_run.dag_id)
    assert status.sensor.state == "failed"
    assert store.sensor_status(session, "no_such_dag", "size_ray_pool", None).dag_exists is False


def test_xcom_values_since_finds_the_history_written_after_a_time(session: Any, pool_sensor_run: FixtureRun) -> None:
    ti = store.task_instance(session, pool_sensor_run.dag_id, pool_sensor_run.run_id, "size_ray_pool")
    assert ti is not None and ti.start is not None
    assert store.xcom_values_since(session, pool_sensor_run.dag_id, "size_ray_pool", "ray_pool_history", ti.start - 1)
    assert (
        store.xcom_values_since(session, pool_sensor_run.dag_id, "size_ray_pool", "ray_pool_history", ti.end + 3600)
        == []
    )


def test_ml_task_instances_finds_tasks_by_their_page_links_xcom(session: Any, preprocessing_run: FixtureRun) -> None:
    # The fixture task is a plain @task; the return value's key stands in for a link key here.
    found = store.ml_task_instances(
        session, {preprocessing_run.dag_id}, {"training": "-", "preprocessing": "return_value"}
    )
    assert [(kind, ti.task_id) for kind, ti in found] == [("preprocessing", "preprocess")]
    assert store.ml_task_instances(session, set(), {"training": "-", "preprocessing": "return_value"}) == []
