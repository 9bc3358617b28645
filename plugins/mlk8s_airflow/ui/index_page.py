"""The "ML tasks" page: the newest training and preprocessing task instances the user may read, each linked to
its page (the training page, the preprocessing page)."""

from __future__ import annotations

from collections.abc import Sequence

from mlk8s_airflow.ui import urls
from mlk8s_airflow.ui.html_page import document, link, table, utc
from mlk8s_airflow.ui.task_state import TaskInstanceInfo

PAGES = {"training": urls.TRAINING_PAGE, "preprocessing": urls.PREPROCESSING_PAGE}


def render_index_page(rows: Sequence[tuple[str, TaskInstanceInfo]]) -> str:
    cells = []
    for kind, ti in rows:
        page = link(urls.task_page_url(PAGES[kind], ti), ti.task_id + ("" if ti.map_index < 0 else f"[{ti.map_index}]"))
        cells.append((kind, page, link(urls.dag_url(ti.dag_id), ti.dag_id), ti.run_id, ti.state or "", utc(ti.start)))
    pool = link(urls.page_url(urls.RAY_POOL_PAGE), "the Ray pool page")
    return document(
        "ML tasks",
        "ML tasks",
        "Training and preprocessing task instances in the DAGs you may read, newest first.",
        [
            f'<p class="sub">See also {pool}.</p>',
            table(
                "tasks",
                ["kind", "task", "DAG", "run", "state", "started (UTC)"],
                cells,
                empty="No training or preprocessing task has run yet (or none in a DAG you may read).",
            ),
        ],
    )
