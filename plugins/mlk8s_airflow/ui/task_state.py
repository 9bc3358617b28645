"""What the pages show of a task instance and of the Ray pool sensor's DAG, as plain data.

:mod:`mlk8s_airflow.ui.store` fills these from the metadata DB; the pages only read them, so a page can be
rendered (and tested) from data alone.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Task states in which the task may still produce a result: its page reloads itself.
UNFINISHED = frozenset(
    {"scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting"}
)


@dataclass(frozen=True)
class TaskInstanceInfo:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    state: str | None = None
    try_number: int = 0
    start: float | None = None  # Unix seconds
    end: float | None = None
    operator: str | None = None

    @property
    def unfinished(self) -> bool:
        return self.state is None or self.state in UNFINISHED


@dataclass(frozen=True)
class SensorStatus:
    """Where the Ray pool sensor stands: why a page with no decisions has none."""

    dag_id: str
    task_id: str
    dag_exists: bool
    is_paused: bool | None = None
    sensor: TaskInstanceInfo | None = None  # the sensor's task instance in the run shown
