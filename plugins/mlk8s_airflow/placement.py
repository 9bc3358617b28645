"""Where pods go and what they may do: node pools, priority, autoscaler annotations, security contexts.

Two node pools (see docs/kubernetes.md and helm-values/): ``stateful`` nodes (on-demand, tainted so only
pods that ask may land there, never scaled away under a running job) for training, and ``stateless`` nodes
(spot is fine) for Ray workers and preprocessing drivers, whose work Ray and the operator can redo.

The hardened security contexts are defaults a task may adjust, not replace: what a task sets is merged into
them field by field (``merge_security_context``), so asking for one more setting never drops the rest.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from mlk8s_airflow.names import POOL_LABEL, STATEFUL, STATEFUL_TAINT_EFFECT

#: Tells the cluster-autoscaler not to drain the node under this pod to save money.
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
#: The uid of the ``airflow`` user in the official image, which is also our pods' image.
AIRFLOW_UID = 50000

Context = TypeVar("Context", k8s.V1SecurityContext, k8s.V1PodSecurityContext)


def pool_affinity(pool: str, *, required: bool) -> k8s.V1Affinity:
    """Node affinity for a pool: required for stateful work, preferred for stateless work (it may run
    anywhere rather than wait)."""
    term = k8s.V1NodeSelectorTerm(
        match_expressions=[k8s.V1NodeSelectorRequirement(key=POOL_LABEL, operator="In", values=[pool])]
    )
    if required:
        node = k8s.V1NodeAffinity(
            required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(node_selector_terms=[term])
        )
    else:
        node = k8s.V1NodeAffinity(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.V1PreferredSchedulingTerm(weight=100, preference=term)
            ]
        )
    return k8s.V1Affinity(node_affinity=node)


def pool_tolerations(pool: str) -> list[k8s.V1Toleration]:
    """The stateful pool is tainted ``mlk8s.io/pool=stateful:NoSchedule``; its pods tolerate that taint."""
    if pool != STATEFUL:
        return []
    return [k8s.V1Toleration(key=POOL_LABEL, operator="Equal", value=STATEFUL, effect=STATEFUL_TAINT_EFFECT)]


def pod_security_context() -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=AIRFLOW_UID,
        run_as_group=0,
        fs_group=0,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )


def _merge_models(default: Any, requested: Any) -> Any:
    """Fields of ``requested`` that are set, over ``default``; nested models merge recursively."""
    if requested is None:
        return default
    if default is None or not hasattr(default, "openapi_types"):
        return requested
    merged = {name: _merge_models(getattr(default, name), getattr(requested, name)) for name in default.openapi_types}
    return type(default)(**merged)


class _JsonBody:
    """What ``ApiClient.deserialize`` reads: a response whose ``data`` is JSON."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.data = json.dumps(value)


def merge_security_context(default: Context, requested: Context | dict[str, Any] | None) -> Context:
    """``requested`` (a model, or a dict in the API's camelCase form) laid over ``default``, field by field.

    Unset fields keep the hardened default; nested objects (``capabilities``, ``seccompProfile``) merge too,
    so ``{"capabilities": {"add": ["NET_BIND_SERVICE"]}}`` still drops ALL. A field set explicitly wins, even
    one that weakens the default: that is then the task author's visible choice.
    """
    if requested is None:
        return default
    if isinstance(requested, dict):
        requested = ApiClient().deserialize(_JsonBody(requested), type(default).__name__)
    merged: Context = _merge_models(default, requested)
    return merged
