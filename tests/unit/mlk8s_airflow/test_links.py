"""The extra links: each training and preprocessing task links to its own page, under ``[api] base_url``."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from mlk8s_airflow.links import PreprocessingPageLink, RayDashboardLink, TrainingPageLink


class Key(NamedTuple):
    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1


def test_training_and_preprocessing_tasks_link_to_their_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/ml/")
    key = Key("nightly_retrain", "train", "scheduled__2026-12-01T00:00:00+00:00")
    assert TrainingPageLink().get_link(None, ti_key=key) == (
        "/ml/mlk8s/training?dag_id=nightly_retrain&run_id=scheduled__2026-12-01T00%3A00%3A00%2B00%3A00&task_id=train"
    )
    mapped = PreprocessingPageLink().get_link(None, ti_key=Key("d", "prep", "r", 4))
    assert mapped == "/ml/mlk8s/preprocessing?dag_id=d&run_id=r&task_id=prep&map_index=4"


def test_the_operators_carry_their_links() -> None:
    from mlk8s_airflow.operators.preprocessing import PreprocessingOperator
    from mlk8s_airflow.operators.training import TrainingOperator

    assert [type(link) for link in TrainingOperator.operator_extra_links] == [TrainingPageLink]
    assert [type(link) for link in PreprocessingOperator.operator_extra_links] == [
        RayDashboardLink,
        PreprocessingPageLink,
    ]
