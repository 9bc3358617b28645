"""Sizing the Ray worker pool from queued work: a pure policy and a simulator to measure it.

Nothing here imports Airflow, Kubernetes or Ray, and nothing reads a clock: the sensor in
``mlk8s_airflow`` gathers the inputs, calls :func:`decide`, and applies the decisions.

- :mod:`~mlk8s.scaling.model`: the policy's inputs (worker groups, workers, queue snapshots, demand, tuning);
- :mod:`~mlk8s.scaling.state`: what the policy remembers between calls, as JSON;
- :mod:`~mlk8s.scaling.packing`: which group a request grows, and how many workers hold a demand;
- :mod:`~mlk8s.scaling.window`: the scale-down window (what the demand asked for lately);
- :mod:`~mlk8s.scaling.warm_pool`: the adaptive warm pool (per-level idle gaps, ski rental);
- :mod:`~mlk8s.scaling.reasons`: why a decision was made, as data, and its text;
- :mod:`~mlk8s.scaling.policy`: ``decide(DecisionRequest) -> DecisionReply``;
- :mod:`~mlk8s.scaling.trace`, :mod:`~mlk8s.scaling.autoscalers`, :mod:`~mlk8s.scaling.simulation`,
  :mod:`~mlk8s.scaling.results`: the simulator's trace format, the autoscalers it compares, the replay and
  its figures; ``python -m mlk8s.scaling.simulate`` is its command line.
"""

from __future__ import annotations

from mlk8s.scaling.autoscalers import Autoscaler, FixedPool, IdleTimeout, PolicyAutoscaler, View
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
from mlk8s.scaling.results import RunResult
from mlk8s.scaling.simulation import Simulation, SimulationError
from mlk8s.scaling.state import PolicyState
from mlk8s.scaling.trace import TRACE_HEADER, Task, TraceError, check_trace_fits, load_trace

__all__ = [
    "TRACE_HEADER",
    "Autoscaler",
    "Decision",
    "DecisionReply",
    "DecisionRequest",
    "FixedPool",
    "IdleTimeout",
    "PolicyAutoscaler",
    "PolicyConfig",
    "PolicyInputError",
    "PolicyState",
    "QueueSnapshot",
    "ResourceDemand",
    "RunResult",
    "Simulation",
    "SimulationError",
    "Task",
    "TraceError",
    "View",
    "Worker",
    "WorkerGroupSpec",
    "check_trace_fits",
    "decide",
    "group_for",
    "load_trace",
    "workers_needed",
]
