"""What every Ray pool actuator offers the sensor: who is in the pool, and how to apply a decision.

The split keeps the loop the same for KubeRay and the local cluster: an actuator lists the pool's members as
the infrastructure sees them (pods, or local Ray nodes), the sensor joins them with what Ray says (busy or
idle) to build the policy's :class:`~mlk8s.scaling.Worker` list, and hands each
:class:`~mlk8s.scaling.Decision` back with an id. Targets are absolute sizes, never deltas, so
applying a decision after a crash or a retry cannot grow or shrink the pool twice; the id makes a repeated
application a no-op that says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from mlk8s.scaling import Decision, Worker


class ActuatorMode(StrEnum):
    """Where the pool lives and who may change it."""

    #: KubeRay RayCluster with its in-tree autoscaler on: we only move minReplicas.
    KUBERAY_COOPERATE = "kuberay-cooperate"
    #: KubeRay RayCluster with in-tree autoscaling off: we own replicas and scaleStrategy.workersToDelete.
    KUBERAY_OWN = "kuberay-own"
    #: Real Ray worker nodes of the local Ray pool on this machine (mlk8s.local_ray.pool).
    LOCAL = "local"

    @classmethod
    def parse(cls, value: str) -> ActuatorMode:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"actuator={value!r} is not a known actuator mode; use one of {choices}") from None


class ActuatorError(RuntimeError):
    """The actuator could not apply a decision after its retries; the pool is left as it was last valid."""


@dataclass(frozen=True)
class Member:
    """A pool member as the infrastructure sees it.

    ``id`` is what the actuator removes by (a pod name, a Ray node id). ``ray_keys`` are the identities Ray
    reports for it (node id, instance id = pod name, pod IP), used to find whether it is busy. ``pending``
    means requested but not running yet (a Pending pod).
    """

    id: str
    group: str
    started_at: float
    pending: bool = False
    ray_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyResult:
    """What happened to one decision: ``applied`` False with a ``note`` when skipped (already applied, no-op)."""

    group: str
    applied: bool
    note: str


class Actuator(ABC):
    mode: ActuatorMode

    @abstractmethod
    def members(self) -> list[Member]:
        """Every worker of every managed group, as the infrastructure sees it now."""

    @abstractmethod
    def apply(self, decisions: Sequence[Decision], workers: Sequence[Worker], decision_id: str) -> list[ApplyResult]:
        """Bring each group to its decision's target; ``workers`` are the inputs the decision was made on."""
