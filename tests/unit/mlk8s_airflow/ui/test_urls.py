"""URLs of the pages: under the path of ``[api] base_url``, origin-relative, every id quoted."""

from __future__ import annotations

import pytest

from mlk8s_airflow.ui import urls


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        (None, "/"),
        ("", "/"),
        ("http://localhost:8080", "/"),
        ("https://airflow.example.com/team-a", "/team-a/"),
        ("https://airflow.example.com/team-a/airflow/", "/team-a/airflow/"),
    ],
)
def test_base_path_is_the_path_of_base_url(monkeypatch: pytest.MonkeyPatch, base_url: str | None, path: str) -> None:
    if base_url is None:
        monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", base_url)
    assert urls.base_path() == path


def test_page_and_task_urls_quote_run_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/x")
    run_id = "manual__2026-12-02T01:02:03+00:00"
    assert (
        urls.page_url(urls.TRAINING_PAGE, dag_id="d", run_id=run_id, task_id="t", map_index=None)
        == "/x/mlk8s/training?dag_id=d&run_id=manual__2026-12-02T01%3A02%3A03%2B00%3A00&task_id=t"
    )
    assert (
        urls.task_instance_url("d", run_id, "t") == "/x/dags/d/runs/manual__2026-12-02T01%3A02%3A03%2B00%3A00/tasks/t"
    )
    assert urls.task_instance_url("d", "r", "t", 3).endswith("/tasks/t/mapped/3")
    assert urls.dag_url("a b") == "/x/dags/a%20b"
    assert urls.page_url(urls.RAY_POOL_PAGE) == "/x/mlk8s/ray-pool"


def test_task_page_url_leaves_out_the_map_index_of_an_unmapped_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlk8s_airflow.ui.task_state import TaskInstanceInfo

    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    assert (
        urls.task_page_url(urls.TRAINING_PAGE, TaskInstanceInfo("d", "r", "t"))
        == "/mlk8s/training?dag_id=d&run_id=r&task_id=t"
    )
    assert urls.task_page_url(urls.TRAINING_PAGE, TaskInstanceInfo("d", "r", "t", 0)).endswith("&map_index=0")
