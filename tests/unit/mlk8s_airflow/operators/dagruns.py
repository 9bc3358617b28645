"""Run a fixture DAG through ``dag.test()`` and read back one task's outcome from the metadata DB."""

from __future__ import annotations

from typing import Any


def run_fixture_dag(dag: Any, task_id: str) -> tuple[str, Any, int]:
    """Return the task's state, its ``return_value`` XCom (or None) and its try number."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dr = dag.test()
    ti = next(t for t in dr.get_task_instances() if t.task_id == task_id)
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag.dag_id, run_id=dr.run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        xcom = XComModel.deserialize_value(row) if row is not None else None
    return str(ti.state), xcom, ti.try_number
