"""The FastAPI app behind the "Ray pool" page, imported by :class:`~mlk8s_airflow.ui.ray_pool.LazyApp` on the
first request, so only the API server pays for Airflow's API security imports."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from mlk8s import compat
from mlk8s_airflow.ui.ray_pool import DEFAULT_DAG_ID, DEFAULT_TASK_ID, load_history, render_page

DagAccessEntity = compat.get("airflow.DagAccessEntity")
SessionDep = compat.get("airflow.SessionDep")
requires_access_dag = compat.get("airflow.requires_access_dag")

app = FastAPI(title="mlk8s Ray pool", docs_url=None, redoc_url=None, openapi_url=None)


@app.get(
    "/",
    response_class=HTMLResponse,
    dependencies=[Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM))],
)
def ray_pool_page(
    session: SessionDep,  # type: ignore[valid-type]
    dag_id: Annotated[str, Query()] = DEFAULT_DAG_ID,
    run_id: Annotated[str | None, Query()] = None,
    task_id: Annotated[str, Query()] = DEFAULT_TASK_ID,
) -> HTMLResponse:
    history = load_history(session, dag_id, run_id or None, task_id)
    return HTMLResponse(render_page(history, dag_id, run_id))
