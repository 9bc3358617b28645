"""Runs shared by the pages' tests: one real evicted training run (the slowest part, done once per session)."""

from __future__ import annotations

import pytest

from tests.unit.mlk8s_airflow.ui.runs import FixtureRun, run_dag


@pytest.fixture(scope="session")
def evicted_training_run(airflow_db: object) -> FixtureRun:
    """``train_sigterm``: the real trainer on the local backend, evicted once (SIGTERM) and relaunched."""
    from tests.fixture_dags import training_dags

    run = run_dag(training_dags.train_sigterm)
    assert run.state == "success", run
    return run


@pytest.fixture(scope="session")
def pool_sensor_run(airflow_db: object) -> FixtureRun:
    """``ui_ray_pool``: a sensor task that stores decisions and an error, then fails."""
    from tests.fixture_dags import ui_dags

    run = run_dag(ui_dags.ui_ray_pool)
    assert run.state == "failed", run
    return run


@pytest.fixture(scope="session")
def preprocessing_run(pool_sensor_run: FixtureRun) -> FixtureRun:
    """``ui_preprocessing``: a task with a preprocessing result, run while the pool sensor's history is fresh."""
    from tests.fixture_dags import ui_dags

    run = run_dag(ui_dags.ui_preprocessing)
    assert run.state == "success", run
    return run
