"""The training page: the loss curve across relaunches, each checkpoint committed, each resume with the work it
lost, the relaunches; from fixture data shaped as the trainer documents it, and from a real evicted run."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mlk8s_airflow.ui.task_state import TaskInstanceInfo
from mlk8s_airflow.ui.training_page import render_training_page
from tests.unit.mlk8s_airflow.ui.charts import chart, markers, polyline
from tests.unit.mlk8s_airflow.ui.runs import FixtureRun

TI = TaskInstanceInfo("nightly_retrain", "manual__1", "train", state="success", try_number=1)
HISTORY = {
    "loss": [{"step": s, "epoch": s // 40, "loss": 2.0 / (1 + s)} for s in range(0, 120, 10)],
    "checkpoints": [
        {"step": s, "epoch": s // 40, "time": 1000.0 + s, "uri": f"file:///ck/step-{s}"} for s in (40, 80, 120)
    ],
    "resumes": [{"from_step": 40, "work_lost_steps": 7, "time": 1100.0}],
}
RESULT = {"steps": 120, "epochs": 3, "resumes": 1, "work_lost_steps": 7, "relaunches": 1, "metrics": {"acc": 0.93}}


def card(page: str, key: str) -> str:
    match = re.search(rf'data-key="{re.escape(key)}"><div class="k">[^<]*</div><div class="v">([^<]*)</div>', page)
    assert match, key
    return match.group(1)


def test_the_loss_curve_has_every_point_and_a_marker_per_checkpoint_and_resume() -> None:
    page = render_training_page(TI, {**RESULT, "history": HISTORY})
    svg = chart(page, "loss")
    assert len(polyline(svg, "loss")) == len(HISTORY["loss"])
    assert markers(svg, "checkpoint") == [40.0, 80.0, 120.0]
    assert markers(svg, "resume") == [40.0]
    assert "7 steps of work lost and redone" in svg


def test_the_figures_and_tables_say_what_happened() -> None:
    page = render_training_page(TI, {**RESULT, "history": HISTORY})
    assert card(page, "relaunches") == "1" and card(page, "resumes") == "1" and card(page, "work lost (steps)") == "7"
    assert card(page, "checkpoints") == "3" and card(page, "acc") == "0.93"
    assert card(page, "final loss") == f"{2.0 / 111:.4g}"
    assert page.count("file:///ck/step-") == 3
    resumes = re.search(r'<table class="resumes">.*?</table>', page, re.S)
    assert resumes and "<td>40</td><td>7</td>" in resumes.group(0)


def test_a_result_without_history_shows_the_totals_and_says_so() -> None:
    page = render_training_page(TI, RESULT)
    assert "carries no history" in page and card(page, "relaunches") == "1"


@pytest.mark.parametrize(
    ("state", "text", "reloads"),
    [
        ("running", "The task is running (try 1)", True),
        ("queued", "The task is queued", True),
        ("failed", "This try failed before returning a result", False),
        ("success", "has no training result to show", False),
    ],
)
def test_no_result_yet_says_why(state: str, text: str, reloads: bool) -> None:
    ti = TaskInstanceInfo("d", "r", "train", state=state, try_number=1, operator="TrainingOperator")
    page = render_training_page(ti, None)
    assert text in page
    assert ('http-equiv="refresh"' in page) is reloads


def test_a_result_of_the_wrong_shape_is_named() -> None:
    page = render_training_page(TI, {**RESULT, "history": {"loss": [{"step": "x"}]}})
    assert "result history.loss.0.step: Input should be a valid integer" in page


def test_links_go_to_the_task_in_airflow() -> None:
    page = render_training_page(TaskInstanceInfo("d", "manual__2026+1", "train", map_index=2), RESULT)
    assert 'href="/dags/d/runs/manual__2026%2B1/tasks/train/mapped/2"' in page
    assert "Training: train[2]" in page


@pytest.mark.slow
@pytest.mark.airflow
def test_a_real_evicted_training_run_is_drawn_from_its_xcom(evicted_training_run: FixtureRun) -> None:
    """Both sides of the contract: the real trainer and operator write the result, the page reads it."""
    from airflow.utils.session import create_session

    from mlk8s_airflow.links import TrainingPageLink
    from mlk8s_airflow.ui import store, urls

    dag_id, run_id = evicted_training_run.dag_id, evicted_training_run.run_id
    link_key = TrainingPageLink().xcom_key
    with create_session() as session:
        ti = store.task_instance(session, dag_id, run_id, "train")
        result: Any = store.xcom_value(session, dag_id, run_id, "train", "return_value")
        link_url = store.xcom_value(session, dag_id, run_id, "train", link_key)
        listed = store.ml_task_instances(session, {dag_id}, {"training": link_key, "preprocessing": "-"})
    assert ti is not None and ti.state == "success" and ti.operator == "TrainingOperator"
    page = render_training_page(ti, result)
    assert card(page, "relaunches") == "1" == str(result["relaunches"])
    assert card(page, "resumes") == "1" and card(page, "steps") == str(result["steps"])
    # The extra link the worker stored when the task ended points at this page of this very task instance.
    assert link_url == urls.page_url(urls.TRAINING_PAGE, dag_id=dag_id, run_id=run_id, task_id="train")
    assert ("training", ti) in listed


def test_a_bounded_history_says_what_it_kept() -> None:
    history = {**HISTORY, "loss_every_steps": 8, "checkpoints_total": 250, "resumes_total": 1}
    page = render_training_page(TI, {**RESULT, "history": history})
    assert card(page, "checkpoints") == "250"
    assert "one loss point per 8 steps; showing the newest 3 of 250 checkpoints." in page
    assert "showing" not in render_training_page(TI, {**RESULT, "history": HISTORY})
