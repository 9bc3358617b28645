"""The pages' reads of Airflow's metadata DB, in the API server: XCom values, task instances, the sensor's DAG.

This is Airflow's own server reading its own DB, in the request's session, after Airflow's auth has let the
request through (task code never does this; it uses the REST API). The models are Airflow internals, so they
come through :mod:`mlk8s.compat`. SQLAlchemy is imported when a page is served, not when the plugin loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlk8s import compat
from mlk8s_airflow.ui.task_state import SensorStatus, TaskInstanceInfo

#: Task types whose instances the index lists (their subclasses are found through their extra link's XCom).
TRAINING_OPERATORS = ("TrainingOperator",)
PREPROCESSING_OPERATORS = ("PreprocessingOperator",)


def _ts(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


def _info(ti: Any) -> TaskInstanceInfo:
    return TaskInstanceInfo(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=int(ti.map_index),
        state=None if ti.state is None else str(ti.state),
        try_number=int(ti.try_number or 0),
        start=_ts(ti.start_date),
        end=_ts(ti.end_date),
        operator=ti.custom_operator_name or ti.operator,
    )


def xcom_value(session: Any, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
    """The XCom's value, or None when there is none."""
    from sqlalchemy import select

    XComModel = compat.get("airflow.XComModel")
    row = session.scalars(
        select(XComModel).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id == task_id,
            XComModel.map_index == map_index,
            XComModel.key == key,
        )
    ).first()
    return None if row is None else XComModel.deserialize_value(row)


def task_instance(session: Any, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TaskInstanceInfo | None:
    from sqlalchemy import select

    TI = compat.get("airflow.TaskInstance")
    ti = session.scalars(
        select(TI).where(TI.dag_id == dag_id, TI.run_id == run_id, TI.task_id == task_id, TI.map_index == map_index)
    ).first()
    return None if ti is None else _info(ti)


def latest_run_id(session: Any, dag_id: str) -> str | None:
    from sqlalchemy import select

    DagRun = compat.get("airflow.DagRun")
    return session.scalars(
        select(DagRun.run_id).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc(), DagRun.id.desc())
    ).first()


def sensor_status(session: Any, dag_id: str, task_id: str, run_id: str | None) -> SensorStatus:
    """Where the sensor of ``run_id`` (default: the DAG's latest run) stands."""
    from sqlalchemy import select

    DagModel = compat.get("airflow.DagModel")
    dag = session.scalars(select(DagModel).where(DagModel.dag_id == dag_id)).first()
    if dag is None:
        return SensorStatus(dag_id, task_id, dag_exists=False)
    run_id = run_id or latest_run_id(session, dag_id)
    sensor = task_instance(session, dag_id, run_id, task_id) if run_id else None
    return SensorStatus(dag_id, task_id, dag_exists=True, is_paused=bool(dag.is_paused), sensor=sensor)


def xcom_values_since(session: Any, dag_id: str, task_id: str, key: str, since: float) -> list[Any]:
    """The values of ``key`` written by ``dag_id.task_id`` at or after ``since`` (Unix s), oldest first."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    XComModel = compat.get("airflow.XComModel")
    rows = session.scalars(
        select(XComModel)
        .where(
            XComModel.dag_id == dag_id,
            XComModel.task_id == task_id,
            XComModel.key == key,
            XComModel.timestamp >= datetime.fromtimestamp(since, UTC),
        )
        .order_by(XComModel.timestamp)
        .limit(10)
    )
    return [XComModel.deserialize_value(row) for row in rows]


def ml_task_instances(
    session: Any, dag_ids: Iterable[str], link_keys: dict[str, str], limit: int = 100
) -> list[tuple[str, TaskInstanceInfo]]:
    """The newest training and preprocessing task instances of ``dag_ids``, as (kind, info).

    ``link_keys`` maps a kind to the XCom key of its page link: a finished task of a subclass is found by it.
    """
    from sqlalchemy import and_, exists, or_, select

    TI = compat.get("airflow.TaskInstance")
    XComModel = compat.get("airflow.XComModel")
    kinds = {"training": TRAINING_OPERATORS, "preprocessing": PREPROCESSING_OPERATORS}
    found: list[tuple[str, TaskInstanceInfo]] = []
    for kind, operators in kinds.items():
        has_link = exists().where(
            and_(
                XComModel.dag_id == TI.dag_id,
                XComModel.run_id == TI.run_id,
                XComModel.task_id == TI.task_id,
                XComModel.map_index == TI.map_index,
                XComModel.key == link_keys[kind],
            )
        )
        query = (
            select(TI)
            .where(TI.dag_id.in_(list(dag_ids)), or_(TI.operator.in_(operators), has_link))
            .order_by(TI.start_date.desc().nulls_last())
            .limit(limit)
        )
        found += [(kind, _info(ti)) for ti in session.scalars(query)]
    found.sort(key=lambda item: item[1].start or 0.0, reverse=True)
    return found[:limit]
