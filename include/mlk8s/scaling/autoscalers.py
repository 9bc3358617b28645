"""The autoscalers the simulator compares: our policy as the sensor runs it, and two baselines.

- :class:`PolicyAutoscaler`: the production :func:`~mlk8s.scaling.policy.decide`, its state carried through
  the JSON form between decisions as the sensor carries it;
- :class:`FixedPool`: every group at its max for the whole run; never changes;
- :class:`IdleTimeout`: KubeRay's default autoscaler in outline: at each interval, launch the workers that
  the pending demand needs beyond those already starting (no upscaling-speed limit, which favours it), and
  remove a worker once it has been idle ``idle_timeout_s`` seconds (KubeRay's default is 60).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlk8s.scaling.model import PolicyConfig, QueueSnapshot, ResourceDemand, Worker, WorkerGroupSpec
from mlk8s.scaling.packing import group_for, workers_needed
from mlk8s.scaling.policy import Decision, DecisionRequest, decide
from mlk8s.scaling.state import PolicyState


@dataclass(frozen=True)
class View:
    """What an autoscaler sees at one interval: what the sensor would read at that moment."""

    now: float
    groups: Sequence[WorkerGroupSpec]
    workers: Sequence[Worker]
    queue: Sequence[QueueSnapshot]
    demand: Sequence[ResourceDemand]


class Autoscaler(Protocol):
    def step(self, view: View) -> list[Decision]:
        """The decisions for this view (one per group)."""
        ...

    def recheck_at(self, view: View) -> float | None:
        """Asked after :meth:`step` on the same view: the earliest time at which the same view could be
        decided otherwise (None: never). The simulator skips the decision ticks before it."""
        ...


@dataclass
class PolicyAutoscaler:
    """Our policy, carrying its state through the JSON form as the sensor does."""

    config: PolicyConfig
    state_json: dict[str, Any] = field(default_factory=dict)
    last_recheck_at: float | None = None

    def step(self, view: View) -> list[Decision]:
        reply = decide(
            DecisionRequest(
                now=view.now,
                groups=view.groups,
                workers=view.workers,
                queues=view.queue,
                demand=view.demand,
                config=self.config,
                state=PolicyState.from_json(self.state_json),
            )
        )
        self.state_json = json.loads(json.dumps(reply.state.to_json()))
        self.last_recheck_at = reply.recheck_at
        return list(reply.decisions)

    def recheck_at(self, view: View) -> float | None:
        return self.last_recheck_at


class FixedPool:
    """Every group at its max from the start; never changes."""

    def step(self, view: View) -> list[Decision]:
        out = []
        for g in view.groups:
            n = sum(1 for w in view.workers if w.group == g.name)
            out.append(Decision(group=g.name, current=n, target=n, remove=(), reason="fixed pool"))
        return out

    def recheck_at(self, view: View) -> float | None:
        return None


@dataclass
class IdleTimeout:
    """KubeRay's default autoscaler in outline: launch for pending demand, remove after an idle timeout."""

    idle_timeout_s: float = 60.0

    def step(self, view: View) -> list[Decision]:
        by_group: dict[str, list[ResourceDemand]] = {g.name: [] for g in view.groups}
        for d in view.demand:
            g = group_for(d, view.groups)
            if g is not None:
                by_group[g.name].append(d)
        return [self._group(g, view, by_group[g.name]) for g in view.groups]

    def recheck_at(self, view: View) -> float | None:
        """When the next idle worker reaches the timeout (one already past it is kept by min_workers)."""
        soonest = math.nextafter(view.now, math.inf)
        due = [
            max(w.idle_since + self.idle_timeout_s, soonest)
            for w in view.workers
            if not w.busy
            and not w.pending
            and w.idle_since is not None
            and view.now - w.idle_since < self.idle_timeout_s  # the test step() applies
        ]
        return min(due, default=None)

    def _group(self, g: WorkerGroupSpec, view: View, demand: list[ResourceDemand]) -> Decision:
        mine = sorted((w for w in view.workers if w.group == g.name), key=lambda w: w.id)
        current = len(mine)
        starting = sum(1 for w in mine if w.pending)
        launch = max(0, workers_needed(demand, g) - starting)
        target = min(max(current + launch, g.min_workers), g.max_workers)
        remove: tuple[str, ...] = ()
        if launch == 0:
            idle = [
                w
                for w in mine
                if not w.busy
                and not w.pending
                and w.idle_since is not None
                and view.now - w.idle_since >= self.idle_timeout_s
            ]
            idle.sort(key=lambda w: (w.idle_since or 0.0, w.id))
            remove = tuple(w.id for w in idle[: max(0, current - g.min_workers)])
            target = current - len(remove)
        return Decision(group=g.name, current=current, target=target, remove=remove, reason="idle")
