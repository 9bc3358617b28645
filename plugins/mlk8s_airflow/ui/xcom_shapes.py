"""The XCom values the pages read, as pydantic models: the one place a page meets data another process wrote.

A value of an unexpected shape (an older trainer, a hand-pushed XCom) is not a server error: :func:`parse`
returns the problem, naming the field, and the page shows it next to whatever it could still draw.
Unknown fields are ignored, so a producer can add to its result without breaking the pages.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- training: the TrainingOperator's result (the pod's return.json plus the operator's relaunches) ----------
class LossPoint(_Shape):
    step: int
    epoch: int | None = None
    loss: float | None = None  # None: the loss was not finite


class CheckpointCommitted(_Shape):
    step: int
    epoch: int | None = None
    time: float | None = None
    uri: str | None = None


class Resume(_Shape):
    from_step: int
    work_lost_steps: int = 0
    time: float | None = None


class TrainingHistory(_Shape):
    """The trainer's bounded history (mlk8s.training.history): the loss downsampled to a few hundred points,
    the newest checkpoints and resumes, and how many there were in all."""

    loss_every_steps: int | None = None
    loss: list[LossPoint] = Field(default_factory=list)
    checkpoints: list[CheckpointCommitted] = Field(default_factory=list)
    checkpoints_total: int | None = None
    resumes: list[Resume] = Field(default_factory=list)
    resumes_total: int | None = None


class TrainingResult(_Shape):
    model_uri: str | None = None
    checkpoint_uri: str | None = None
    steps: int | None = None
    epochs: int | None = None
    resumes: int = 0
    work_lost_steps: int = 0
    relaunches: int = 0
    metrics: dict[str, float | None] = Field(default_factory=dict)
    history: TrainingHistory | None = None


# -- the Ray pool sensor's XComs -----------------------------------------------------------------------------
class PoolPoint(_Shape):
    """One cycle of the Ray pool loop (``ray_pool_history``)."""

    t: float
    queued: int = 0
    running: int = 0
    pool: int = 0
    target: int = 0
    ray_pending: int | None = None
    reason: str = ""


class SensorError(_Shape):
    """One failure of the Ray pool sensor (``ray_pool_errors``)."""

    t: float
    message: str


# -- preprocessing: the PreprocessingOperator's result -------------------------------------------------------
class PreprocessingResult(_Shape):
    output_uri: str | None = None
    input_rows: int | None = None
    output_rows: int | None = None
    filtered_rows: int | None = None
    duration_s: float | None = None


T = TypeVar("T", bound=BaseModel)


def describe(error: ValidationError, what: str) -> str:
    """One line per problem, naming the field: ``history.loss.3.step: Input should be a valid integer``."""
    lines = []
    for problem in error.errors()[:5]:
        field = ".".join(str(p) for p in problem["loc"]) or "(the value)"
        lines.append(f"{what} {field}: {problem['msg']}")
    more = error.error_count() - len(lines)
    return "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")


def parse(model: type[T], value: Any, what: str) -> tuple[T | None, str | None]:
    """``(parsed, None)``, or ``(None, problem)`` when ``value`` does not have the model's shape."""
    if value is None:
        return None, None
    try:
        return model.model_validate(value), None
    except ValidationError as exc:
        return None, describe(exc, what)


def parse_list(model: type[T], value: Any, what: str) -> tuple[list[T], str | None]:
    """The items of a list XCom that have the model's shape, and a problem naming the first that does not."""
    if value is None:
        return [], None
    if not isinstance(value, list):
        return [], f"{what}: expected a list, found {type(value).__name__}"
    items: list[T] = []
    problem = None
    for i, item in enumerate(value):
        parsed, error = parse(model, item, f"{what}[{i}]")
        if parsed is not None:
            items.append(parsed)
        elif problem is None:
            problem = error
    return items, problem
