"""Sizing the Ray worker pool from queued work: a pure policy and a simulator to measure it.

Nothing here imports Airflow, Kubernetes or Ray, and nothing reads a clock: the sensor in
``mlk8s_airflow`` gathers the inputs, calls :func:`decide`, and applies the decisions.
"""

from __future__ import annotations

from mlk8s.scaling.policy import (
    Decision,
    PolicyConfig,
    PolicyInputError,
    PolicyState,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
    decide,
)

__all__ = [
    "Decision",
    "PolicyConfig",
    "PolicyInputError",
    "PolicyState",
    "QueueSnapshot",
    "ResourceDemand",
    "Worker",
    "WorkerGroupSpec",
    "decide",
]
