"""The pages' FastAPI app, mounted by the plugin in Airflow's API server behind Airflow's own auth.

Every page resolves the caller with Airflow's auth manager (a bearer token or the UI's session cookie; no
credential is a 401) and asks it for read access to the very DAG whose data it shows (no access is a 403,
and the index lists only the DAGs the caller may read). Imported on the first request by
:class:`~mlk8s_airflow.ui.mount.LazyApp`, so only the API server pays for Airflow's API security imports.

Why server-rendered pages rather than a React plugin app: the pages are charts and tables of a few XComs;
HTML with inline SVG needs no bundle, no build step and no JavaScript, and works inside the UI's iframe.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from mlk8s import compat
from mlk8s_airflow.links import PreprocessingPageLink, TrainingPageLink
from mlk8s_airflow.ui import store, urls
from mlk8s_airflow.ui.html_page import document, link, notice
from mlk8s_airflow.ui.index_page import render_index_page
from mlk8s_airflow.ui.preprocessing_page import MARGIN_S, render_preprocessing_page
from mlk8s_airflow.ui.ray_pool_page import ERRORS_XCOM_KEY, HISTORY_XCOM_KEY, render_ray_pool_page
from mlk8s_airflow.ui.task_state import TaskInstanceInfo
from mlk8s_airflow.ui.training_page import render_training_page
from mlk8s_airflow.ui.xcom_shapes import PoolPoint, parse_list

DagAccessEntity = compat.get("airflow.DagAccessEntity")
SessionDep = compat.get("airflow.SessionDep")
GetUserDep = compat.get("airflow.GetUserDep")
requires_access_dag = compat.get("airflow.requires_access_dag")

RAY_POOL_DAG_ID = "ray_pool_autoscaler"
RAY_POOL_TASK_ID = "size_ray_pool"
RESULT_XCOM_KEY = "return_value"

app = FastAPI(title="mlk8s pages", docs_url=None, redoc_url=None, openapi_url=None)


def authorize(request: Request, user: Any, dag_id: str, *entities: str) -> None:
    """Airflow's own DAG access check for ``dag_id``: raises 403 unless ``user`` may read each entity."""
    for entity in entities:
        requires_access_dag(method="GET", access_entity=DagAccessEntity[entity], param_dag_id=dag_id)(request, user)


def may_read(request: Request, user: Any, dag_id: str) -> bool:
    try:
        authorize(request, user, dag_id, "XCOM")
    except HTTPException:
        return False
    return True


@app.exception_handler(HTTPException)
async def refused(request: Request, exc: HTTPException) -> HTMLResponse:
    """A refusal as a page saying what to do (log in, or ask for access), with the status Airflow chose."""
    if exc.status_code == 401:
        text = "Log in to Airflow to see this page."
        body = [notice("error", text), f"<p>{link(urls.base_path(), 'Log in')}</p>"]
    elif exc.status_code == 403:
        body = [notice("error", "Your Airflow user may not read this DAG's task instances and XComs.")]
    else:
        body = [notice("error", str(exc.detail))]
    return HTMLResponse(document("mlk8s", "Refused", "", body), status_code=exc.status_code, headers=exc.headers)


def _not_found(dag_id: str, run_id: str, task_id: str, map_index: int) -> HTMLResponse:
    text = f"No task instance {dag_id} / {run_id} / {task_id}" + (f" [{map_index}]" if map_index >= 0 else "")
    return HTMLResponse(
        document("mlk8s", "Not found", "", [notice("error", text + ": check the link's dag_id, run_id and task_id.")]),
        status_code=404,
    )


@app.get("/", response_class=HTMLResponse)
def index_page(user: GetUserDep, session: SessionDep) -> HTMLResponse:  # type: ignore[valid-type]
    readable = compat.get("airflow.get_auth_manager")().get_authorized_dag_ids(user=user, method="GET", session=session)
    keys = {"training": TrainingPageLink().xcom_key, "preprocessing": PreprocessingPageLink().xcom_key}
    rows = store.ml_task_instances(session, readable, keys)
    return HTMLResponse(render_index_page(rows))


@app.get(f"/{urls.TRAINING_PAGE}", response_class=HTMLResponse)
def training_page(
    request: Request,
    user: GetUserDep,  # type: ignore[valid-type]
    session: SessionDep,  # type: ignore[valid-type]
    dag_id: Annotated[str, Query()],
    run_id: Annotated[str, Query()],
    task_id: Annotated[str, Query()],
    map_index: Annotated[int, Query()] = -1,
) -> HTMLResponse:
    authorize(request, user, dag_id, "TASK_INSTANCE", "XCOM")
    ti = store.task_instance(session, dag_id, run_id, task_id, map_index)
    if ti is None:
        return _not_found(dag_id, run_id, task_id, map_index)
    result = store.xcom_value(session, dag_id, run_id, task_id, RESULT_XCOM_KEY, map_index)
    return HTMLResponse(render_training_page(ti, result))


def pool_points_during(session: Any, ti: TaskInstanceInfo, pool_dag_id: str) -> list[PoolPoint]:
    """The Ray pool sensor's points around the task's run, merged from every history XCom written since."""
    if ti.start is None:
        return []
    values = store.xcom_values_since(session, pool_dag_id, RAY_POOL_TASK_ID, HISTORY_XCOM_KEY, ti.start - MARGIN_S)
    merged: dict[float, PoolPoint] = {}
    for value in values:
        points, _ = parse_list(PoolPoint, value, HISTORY_XCOM_KEY)
        merged.update((p.t, p) for p in points)
    return [merged[t] for t in sorted(merged)]


@app.get(f"/{urls.PREPROCESSING_PAGE}", response_class=HTMLResponse)
def preprocessing_page(
    request: Request,
    user: GetUserDep,  # type: ignore[valid-type]
    session: SessionDep,  # type: ignore[valid-type]
    dag_id: Annotated[str, Query()],
    run_id: Annotated[str, Query()],
    task_id: Annotated[str, Query()],
    map_index: Annotated[int, Query()] = -1,
    pool_dag_id: Annotated[str, Query()] = RAY_POOL_DAG_ID,
) -> HTMLResponse:
    authorize(request, user, dag_id, "TASK_INSTANCE", "XCOM")
    ti = store.task_instance(session, dag_id, run_id, task_id, map_index)
    if ti is None:
        return _not_found(dag_id, run_id, task_id, map_index)
    result = store.xcom_value(session, dag_id, run_id, task_id, RESULT_XCOM_KEY, map_index)
    # The pool's history belongs to another DAG: shown only to a user who may read that one too.
    points = pool_points_during(session, ti, pool_dag_id) if may_read(request, user, pool_dag_id) else []
    return HTMLResponse(render_preprocessing_page(ti, result, points, pool_dag_id, time.time()))


@app.get(f"/{urls.RAY_POOL_PAGE}", response_class=HTMLResponse)
def ray_pool_page(
    request: Request,
    user: GetUserDep,  # type: ignore[valid-type]
    session: SessionDep,  # type: ignore[valid-type]
    dag_id: Annotated[str, Query()] = RAY_POOL_DAG_ID,
    run_id: Annotated[str | None, Query()] = None,
    task_id: Annotated[str, Query()] = RAY_POOL_TASK_ID,
) -> HTMLResponse:
    authorize(request, user, dag_id, "TASK_INSTANCE", "XCOM")
    status = store.sensor_status(session, dag_id, task_id, run_id or None)
    shown_run = status.sensor.run_id if status.sensor else run_id
    history = errors = None
    if shown_run:
        history = store.xcom_value(session, dag_id, shown_run, task_id, HISTORY_XCOM_KEY)
        errors = store.xcom_value(session, dag_id, shown_run, task_id, ERRORS_XCOM_KEY)
    return HTMLResponse(render_ray_pool_page(status, shown_run, history, errors))
