"""The "ML tasks" page: each training and preprocessing task instance linked to its own page."""

from __future__ import annotations

from mlk8s_airflow.ui.index_page import render_index_page
from mlk8s_airflow.ui.task_state import TaskInstanceInfo


def test_each_task_links_to_its_page() -> None:
    page = render_index_page(
        [
            ("training", TaskInstanceInfo("nightly", "r+1", "train", state="running", start=0.0)),
            ("preprocessing", TaskInstanceInfo("prep", "r2", "features", map_index=3, state="success")),
        ]
    )
    assert 'href="/mlk8s/training?dag_id=nightly&amp;run_id=r%2B1&amp;task_id=train"' in page
    assert 'href="/mlk8s/preprocessing?dag_id=prep&amp;run_id=r2&amp;task_id=features&amp;map_index=3"' in page
    assert ">features[3]<" in page and 'href="/mlk8s/ray-pool"' in page


def test_no_tasks_says_so() -> None:
    assert "No training or preprocessing task has run yet" in render_index_page([])
