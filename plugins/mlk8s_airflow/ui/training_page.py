"""The training page of one TrainingOperator task: its loss curve across relaunches, every checkpoint committed,
every resume with the work it lost, and the number of relaunches.

It draws the task's result XCom: the trainer's bounded ``history`` (loss points, checkpoints, resumes; kept in
its checkpointed state, so it spans every pod the task ran in) and the operator's ``relaunches``.
"""

from __future__ import annotations

from typing import Any

from mlk8s_airflow.ui.html_page import Html, cards, document, esc, notice, table, task_line, task_title, utc
from mlk8s_airflow.ui.svg_chart import Axis, Marker, Series, format_number, render_chart
from mlk8s_airflow.ui.task_state import TaskInstanceInfo
from mlk8s_airflow.ui.xcom_shapes import TrainingHistory, TrainingResult, parse

CHECKPOINT_COLOR = "#2da44e"
RESUME_COLOR = "#d1242f"
LOSS_COLOR = "#0969da"
REFRESH_S = 30


def loss_chart(history: TrainingHistory) -> str:
    """Loss by step; a marker per checkpoint committed, a band per resume over the steps it redid."""
    loss = Series(
        "loss",
        "loss",
        LOSS_COLOR,
        [(p.step, p.loss if p.loss is not None else float("nan")) for p in history.loss],
        hover=[f"step {p.step} (epoch {p.epoch}): loss {format_number(p.loss or float('nan'))}" for p in history.loss],
    )
    markers = [
        Marker(
            c.step,
            "checkpoint",
            f"checkpoint committed at step {c.step} (epoch {c.epoch}) {utc(c.time)}",
            CHECKPOINT_COLOR,
        )
        for c in history.checkpoints
    ]
    markers += [
        Marker(
            r.from_step,
            "resume",
            f"resumed from step {r.from_step} at {utc(r.time)}: {r.work_lost_steps} steps of work lost and redone",
            RESUME_COLOR,
            width=float(r.work_lost_steps),
        )
        for r in history.resumes
    ]
    return render_chart(
        "loss",
        [loss],
        x_axis=Axis("step"),
        y_axis=Axis("loss"),
        markers=markers,
        empty="no loss points recorded",
    )


def _summary(result: TrainingResult) -> Html:
    losses = [p.loss for p in result.history.loss if p.loss is not None] if result.history else []
    items: list[tuple[str, Any]] = [
        ("steps", result.steps),
        ("epochs", result.epochs),
        ("relaunches", result.relaunches),
        ("resumes", result.resumes),
        ("work lost (steps)", result.work_lost_steps),
        (
            "checkpoints",
            _total(result.history.checkpoints_total, result.history.checkpoints) if result.history else "-",
        ),
    ]
    if losses:
        items.append(("final loss", format_number(losses[-1])))
    items += [(name, "-" if value is None else format_number(value)) for name, value in sorted(result.metrics.items())]
    return cards(items)


def _total(total: int | None, shown: list[Any]) -> int:
    return len(shown) if total is None else total


def _kept_note(history: TrainingHistory) -> str:
    """Says so when the history kept only the newest checkpoints or resumes (it is bounded)."""
    notes = [
        f"the newest {len(shown)} of {total} {what}"
        for what, shown, total in (
            ("checkpoints", history.checkpoints, history.checkpoints_total),
            ("resumes", history.resumes, history.resumes_total),
        )
        if total is not None and total > len(shown)
    ]
    every = f"one loss point per {history.loss_every_steps} steps" if (history.loss_every_steps or 1) > 1 else ""
    parts = [*([every] if every else []), *(f"showing {n}" for n in notes)]
    return f'<p class="sub">{esc("; ".join(parts))}.</p>' if parts else ""


def _pending(ti: TaskInstanceInfo) -> Html:
    if ti.unfinished:
        return notice(
            "info",
            f"The task is {ti.state or 'not started yet'} (try {ti.try_number}). Its loss curve, checkpoints and "
            "resumes appear here when the try ends: the trainer reports them in its result. This page reloads itself.",
        )
    if ti.state == "failed":
        return notice("warn", "This try failed before returning a result; the task log says why.")
    return notice("warn", f"This task ({ti.operator or 'unknown operator'}) has no training result to show.")


def render_training_page(ti: TaskInstanceInfo, result_value: Any) -> str:
    """The whole page for one task instance and its result XCom (``None`` while there is none)."""
    result, problem = parse(TrainingResult, result_value, "result")
    body: list[str] = []
    if problem:
        body.append(notice("warn", "The result XCom does not have the shape this page reads.", problem))
    if result is None:
        body.append(_pending(ti))
    else:
        body.append(_summary(result))
        if result.history is None:
            body.append(
                notice("info", "This result carries no history (the trainer that wrote it predates it): totals only.")
            )
        history = result.history or TrainingHistory()
        body += ["<h3>Loss</h3>", loss_chart(history), _kept_note(history)]
        body += [
            "<h3>Checkpoints committed</h3>",
            table(
                "checkpoints",
                ["step", "epoch", "time (UTC)", "uri"],
                [(c.step, c.epoch, utc(c.time), c.uri) for c in history.checkpoints],
            ),
            "<h3>Resumes</h3>",
            table(
                "resumes",
                ["time (UTC)", "from step", "work lost (steps)"],
                [(utc(r.time), r.from_step, r.work_lost_steps) for r in history.resumes],
                empty="none: the training ran without a resume",
            ),
            f'<p class="sub">{result.relaunches} relaunch(es) by the operator (a pod evicted or killed and '
            "launched again within this try, no Airflow retry spent). Model: "
            f"{esc(result.model_uri or '-')}</p>",
        ]
    title = task_title(ti)
    return document(
        f"Training: {title}", f"Training: {title}", task_line(ti), body, refresh_s=REFRESH_S if ti.unfinished else None
    )
