"""Where the mlk8s pages live, as URLs that honour Airflow's ``[api] base_url``.

Both sides use it: the operators' extra links (computed on the worker when a task finishes) and the pages
themselves (rendered in the API server). Only the *path* of ``base_url`` is used: the UI and the pages are
served by the same API server, so a path-only link keeps the origin the browser already has (and its
session cookie) even where ``base_url`` names another host than the one the user typed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit

#: Where the plugin mounts the pages' app in the API server (below the base path).
MOUNT = "mlk8s"

TRAINING_PAGE = "training"
PREPROCESSING_PAGE = "preprocessing"
RAY_POOL_PAGE = "ray-pool"


def base_path() -> str:
    """The path of ``[api] base_url`` with one trailing slash (``/`` when unset)."""
    from airflow.configuration import conf

    path = urlsplit(conf.get("api", "base_url", fallback="") or "").path
    return "/" + path.strip("/") + "/" if path.strip("/") else "/"


def page_url(page: str, **query: str | int | None) -> str:
    """The URL of one of our pages, e.g. ``/airflow/mlk8s/training?dag_id=...``; ``None`` values are left out."""
    params = {k: str(v) for k, v in query.items() if v is not None}
    return f"{base_path()}{MOUNT}/{page}" + (f"?{urlencode(params)}" if params else "")


def task_page_url(page: str, ti: Any) -> str:
    """The URL of ``page`` for one task instance (anything with dag_id, run_id, task_id and map_index)."""
    map_index = getattr(ti, "map_index", -1)
    return page_url(
        page,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=None if map_index is None or map_index < 0 else map_index,
    )


def task_instance_url(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The task instance's page in Airflow's own UI."""
    url = f"{base_path()}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    return url + (f"/mapped/{map_index}" if map_index >= 0 else "")


def dag_url(dag_id: str) -> str:
    return f"{base_path()}dags/{quote(dag_id, safe='')}"
