"""Fixture DAG runs the pages' tests read (run with ``dag.test()`` into the session's metadata DB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FixtureRun:
    dag_id: str
    run_id: str
    state: str


def run_dag(dag: Any) -> FixtureRun:
    run = dag.test()
    return FixtureRun(run.dag_id, run.run_id, str(run.state))
