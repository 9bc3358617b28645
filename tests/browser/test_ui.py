"""A user in the browser, against what ``make up`` starts: triggers ``preprocess_on_demand`` through its form (an
invalid Param refused, naming the field; a valid one runs), follows the extra links to the preprocessing and
the training pages, opens the Ray pool page from the menu, and checks that each plot draws the very points its
XCom holds. Screenshots: tests/browser/artifacts/*.png.

While the form is exercised, a small ``nightly_retrain`` (with a simulated eviction, so its training resumes)
and the Ray pool sensor run under the real scheduler and triggerer, started through the REST API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.airflow_client import LocalAirflow

# Each step may wait for a run under the real scheduler (up to RUN_TIMEOUT_S) after make up has started.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.airflow, pytest.mark.timeout(1500)]

PREPROCESS_DAG = "preprocess_on_demand"
RETRAIN_DAG = "nightly_retrain"
POOL_DAG, POOL_TASK = "ray_pool_autoscaler", "size_ray_pool"
# As make demo runs it: enough steps after the first checkpoint for the eviction to land mid-run.
RETRAIN_CONF = {"documents": 300, "epochs": 20, "simulate_eviction": True}
POOL_CONF = {"interval_s": 2, "scale_down_window_s": 20}
INVALID_FRACTION, VALID_FRACTION, SAMPLE_DOCUMENTS = "2", "0.5", "40"
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def background_runs(airflow_up: LocalAirflow) -> dict[str, str]:
    """Started first, so they run while the form is tried: the pool sensor and a small nightly retrain."""
    return {
        POOL_DAG: airflow_up.api.trigger(POOL_DAG, POOL_CONF, in_the_schedules_slot=True),
        RETRAIN_DAG: airflow_up.api.trigger(RETRAIN_DAG, RETRAIN_CONF),
    }


def points(svg: Any, key: str) -> int:
    """How many data points a drawn series has (a step series draws 2n - 1 vertices for n points)."""
    raw = svg.locator(f"polyline.series-{key}").get_attribute("points") or ""
    return len(raw.split())


def open_trigger_form(page: Any, airflow_up: LocalAirflow) -> Any:
    page.goto(f"{airflow_up.url}/dags/{PREPROCESS_DAG}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def type_into(dialog: Any, field: str, value: str) -> None:
    """As a person types: select what is there, type over it, leave the field."""
    box = dialog.locator(f"input[name=element_{field}]")
    box.click()
    box.press("Control+a")
    box.press_sequentially(value)
    box.press("Tab")


def open_extra_link(page: Any, airflow_up: LocalAirflow, dag_id: str, run_id: str, task_id: str, name: str) -> Any:
    """Open the task's Details in Airflow's UI and follow its extra link ``name`` (same origin: the same tab)."""
    page.goto(f"{airflow_up.url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}/details")
    link = page.get_by_role("link", name=name)
    stored = airflow_up.api.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links")["extra_links"][name]
    assert link.get_attribute("href") == stored
    link.click()
    page.wait_for_url(re.compile(r"/mlk8s/"))
    page.locator("svg.chart").first.wait_for()
    return page


def test_the_form_refuses_an_invalid_param_naming_the_field(
    page: Any, airflow_up: LocalAirflow, background_runs: dict[str, str], screenshot: Callable[[Any, str], Path]
) -> None:
    before = len(airflow_up.api.runs(PREPROCESS_DAG))
    dialog = open_trigger_form(page, airflow_up)
    type_into(dialog, "sample_fraction", INVALID_FRACTION)
    dialog.get_by_role("button", name="Trigger").click()
    refusal = dialog.get_by_text(re.compile(r"Invalid input for param sample_fraction"))
    refusal.wait_for()
    screenshot(page, "trigger-form-refused")
    assert len(airflow_up.api.runs(PREPROCESS_DAG)) == before  # nothing was started


def test_the_form_starts_a_run_with_valid_params(
    page: Any, airflow_up: LocalAirflow, screenshot: Callable[[Any, str], Path]
) -> None:
    before = {r["dag_run_id"] for r in airflow_up.api.runs(PREPROCESS_DAG)}
    dialog = open_trigger_form(page, airflow_up)
    type_into(dialog, "sample_fraction", VALID_FRACTION)
    type_into(dialog, "sample_documents", SAMPLE_DOCUMENTS)  # a small run: its own sample documents
    screenshot(page, "trigger-form-valid")
    dialog.get_by_role("button", name="Trigger").click()
    dialog.wait_for(state="hidden")
    new = [r for r in airflow_up.api.runs(PREPROCESS_DAG) if r["dag_run_id"] not in before]
    assert len(new) == 1 and new[0]["conf"]["sample_fraction"] == float(VALID_FRACTION)
    assert airflow_up.api.wait_for_run(PREPROCESS_DAG, new[0]["dag_run_id"], RUN_TIMEOUT_S) == "success"


def test_the_preprocessing_task_links_to_its_page(
    page: Any, airflow_up: LocalAirflow, screenshot: Callable[[Any, str], Path]
) -> None:
    run = next(r for r in airflow_up.api.runs(PREPROCESS_DAG) if r["state"] == "success")
    task = next(
        t
        for t in airflow_up.api.get(f"dags/{PREPROCESS_DAG}/dagRuns/{run['dag_run_id']}/taskInstances")[
            "task_instances"
        ]
        if t["operator"] == "PreprocessingOperator"
    )
    tab = open_extra_link(page, airflow_up, PREPROCESS_DAG, run["dag_run_id"], task["task_id"], "Preprocessing page")
    result = airflow_up.api.xcom(PREPROCESS_DAG, run["dag_run_id"], task["task_id"])
    card = tab.locator('[data-key="output rows"] .v')
    assert card.inner_text() == str(result["output_rows"])
    pool = tab.locator('svg[data-chart="ray-pool"]')
    assert pool.locator(".marker-task").count() == 1  # the task's run, shaded on the pool's timeline
    assert points(pool, "queued") >= 1  # the sensor saw this task queued or running in pool "ray"
    screenshot(tab, "preprocessing-page")


def test_the_training_page_draws_the_loss_curve_checkpoints_and_resumes(
    page: Any, airflow_up: LocalAirflow, background_runs: dict[str, str], screenshot: Callable[[Any, str], Path]
) -> None:
    run_id = background_runs[RETRAIN_DAG]
    assert airflow_up.api.wait_for_run(RETRAIN_DAG, run_id, RUN_TIMEOUT_S) == "success"
    result = airflow_up.api.xcom(RETRAIN_DAG, run_id, "train")
    tab = open_extra_link(page, airflow_up, RETRAIN_DAG, run_id, "train", "Training page")
    assert tab.locator('[data-key="relaunches"] .v').inner_text() == str(result["relaunches"]) == "1"
    history = result["history"]
    loss = tab.locator('svg[data-chart="loss"]')
    assert points(loss, "loss") == len(history["loss"]) > 1
    assert loss.locator(".marker-checkpoint").count() == len(history["checkpoints"]) > 0
    assert loss.locator(".marker-resume").count() == len(history["resumes"]) == 1
    screenshot(tab, "training-page")


def test_the_ray_pool_page_plots_queue_and_pool_size(
    page: Any, airflow_up: LocalAirflow, background_runs: dict[str, str], screenshot: Callable[[Any, str], Path]
) -> None:
    history = airflow_up.api.xcom(POOL_DAG, background_runs[POOL_DAG], POOL_TASK, "ray_pool_history")
    page.goto(f"{airflow_up.url}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Ray pool").click()
    frame = page.frame_locator("iframe")
    chart = frame.locator('svg[data-chart="ray-pool"]')
    chart.wait_for()
    drawn = points(chart, "pool")
    # The page may have read a longer history than the API call above: at least those points, 2n - 1 vertices.
    assert drawn >= 2 * len(history) - 1 >= 1 and drawn % 2 == 1
    assert points(chart, "queued") == drawn
    assert frame.locator("table.decisions tbody tr").count() >= 1
    screenshot(page, "ray-pool-page")
