"""Sizing the Ray worker pool from queued work: a pure policy and a simulator to measure it.

Nothing here imports Airflow, Kubernetes or Ray, and nothing reads a clock: the sensor in
``mlk8s_airflow`` gathers the inputs, calls :func:`decide`, and applies the decisions.

- :mod:`~mlk8s.scaling.model`: the policy's inputs (worker groups, workers, queue snapshots, demand, tuning);
- :mod:`~mlk8s.scaling.state`: what the policy remembers between calls, as JSON;
- :mod:`~mlk8s.scaling.packing`: which group a request grows, and how many workers hold a demand;
- :mod:`~mlk8s.scaling.reasons`: why a decision was made, as data, and its text;
- :mod:`~mlk8s.scaling.policy`: ``decide(DecisionRequest) -> DecisionReply``.
"""

from __future__ import annotations

from mlk8s.scaling.model import (
    PolicyConfig,
    PolicyInputError,
    QueueSnapshot,
    ResourceDemand,
    Worker,
    WorkerGroupSpec,
)
from mlk8s.scaling.packing import group_for, workers_needed
from mlk8s.scaling.policy import Decision, DecisionReply, DecisionRequest, decide
from mlk8s.scaling.state import PolicyState

__all__ = [
    "Decision",
    "DecisionReply",
    "DecisionRequest",
    "PolicyConfig",
    "PolicyInputError",
    "PolicyState",
    "QueueSnapshot",
    "ResourceDemand",
    "Worker",
    "WorkerGroupSpec",
    "decide",
    "group_for",
    "workers_needed",
]
