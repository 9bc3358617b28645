"""Where pods go and what they may do: node pools, autoscaler annotations, security contexts.

Two node pools (see docs/kubernetes.md and helm-values/): ``stateful`` nodes (on-demand, tainted so only
pods that ask may land there, never scaled away under a running job) for training, and ``stateless`` nodes
(spot is fine) for Ray workers and preprocessing drivers, whose work Ray and the operator can redo.
"""

from __future__ import annotations

from kubernetes.client import models as k8s

POOL_LABEL = "mlk8s.io/pool"
COMPONENT_LABEL = "mlk8s.io/component"
STATEFUL = "stateful"
STATELESS = "stateless"
#: Tells the cluster-autoscaler not to drain the node under this pod to save money.
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
#: The uid of the ``airflow`` user in the official image, which is also our pods' image.
AIRFLOW_UID = 50000


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
    return [k8s.V1Toleration(key=POOL_LABEL, operator="Equal", value=STATEFUL, effect="NoSchedule")]


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
