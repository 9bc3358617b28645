"""Resize a KubeRay RayCluster's worker groups (ray.io/v1), without fighting anyone else who writes it.

Two modes, because the RayCluster has one owner of ``replicas`` at a time:

- ``cooperate``: KubeRay's in-tree autoscaler is on and owns ``replicas`` and ``workersToDelete``. We move
  only ``minReplicas`` (raise it to grow at once for queued Airflow work, lower it back so the autoscaler's
  idle timeout may shrink the group). The autoscaler still picks which idle pods go.
- ``own``: in-tree autoscaling is off. We set ``replicas`` and list exactly the idle pods to remove in
  ``scaleStrategy.workersToDelete`` (``replicas`` lowered by the same number), so KubeRay never has to pick a
  pod at random.

Every write is a JSON merge patch that carries the ``resourceVersion`` we read (optimistic concurrency: a
409 means someone wrote in between, so we re-read and recompute) and the decision id as an annotation, so a
retry of a write whose answer was lost sees its own id and stops. What we write is built by pure
functions (:func:`plan_patch`) that tests validate against the KubeRay CRD schema.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from mlk8s.scaling import Decision, Worker
from mlk8s_airflow.actuators.base import Actuator, ActuatorError, ActuatorMode, ApplyResult, Member
from mlk8s_airflow.retries import retrying

log = logging.getLogger(__name__)

#: The RayCluster's Kubernetes API group and version (not a Ray worker group).
API_GROUP = "ray.io"
VERSION = "v1"
PLURAL = "rayclusters"
#: Annotation on the RayCluster naming the last decision applied to it.
DECISION_ANNOTATION = "mlk8s.io/ray-pool-decision"
#: Annotation with a short, human-readable reason of that decision (kubectl describe shows it).
REASON_ANNOTATION = "mlk8s.io/ray-pool-reason"

Obj = dict[str, Any]


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    """409 (re-read and recompute), 429 and 5xx, and connection-level errors; other 4xx are real errors."""
    status = _status_of(exc)
    if status is not None:
        return status in (409, 429) or status >= 500 or status == 0
    import urllib3.exceptions

    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def _parse_ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


def members_from_pods(pods: Sequence[Obj], cluster: Obj) -> list[Member]:
    """Worker pods of the cluster that count toward its size: not terminating, not already being deleted.

    A pod listed in a group's ``workersToDelete`` is on its way out (KubeRay deletes it on its next
    reconcile); counting it would make the policy remove another one for the same reason.
    """
    leaving: set[str] = set()
    for spec in cluster.get("spec", {}).get("workerGroupSpecs", []) or []:
        leaving.update((spec.get("scaleStrategy") or {}).get("workersToDelete") or [])
    out = []
    for pod in pods:
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        name = meta.get("name", "")
        if labels.get("ray.io/node-type") != "worker" or meta.get("deletionTimestamp") or name in leaving:
            continue
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        pending = status.get("phase") != "Running" or not ready
        keys = tuple(k for k in (name, status.get("podIP") or "") if k)
        out.append(
            Member(
                id=name,
                group=labels.get("ray.io/group", ""),
                started_at=_parse_ts(meta.get("creationTimestamp")),
                pending=pending,
                ray_keys=keys,
            )
        )
    return sorted(out, key=lambda m: m.id)


def check_mode(cluster: Obj, mode: ActuatorMode) -> None:
    """Refuse to run a mode that would fight the cluster's own autoscaler (or wait for one that is off)."""
    name = cluster.get("metadata", {}).get("name", "?")
    in_tree = bool(cluster.get("spec", {}).get("enableInTreeAutoscaling", False))
    if mode is ActuatorMode.KUBERAY_OWN and in_tree:
        raise ActuatorError(
            f"RayCluster {name!r} has spec.enableInTreeAutoscaling: true, so KubeRay's autoscaler owns "
            "replicas; use actuator='kuberay-cooperate', or turn in-tree autoscaling off to use 'kuberay-own'"
        )
    if mode is ActuatorMode.KUBERAY_COOPERATE and not in_tree:
        raise ActuatorError(
            f"RayCluster {name!r} has in-tree autoscaling off, so raising minReplicas alone adds no pods; "
            "use actuator='kuberay-own', or set spec.enableInTreeAutoscaling: true to use 'kuberay-cooperate'"
        )


def plan_patch(
    cluster: Obj,
    decisions: Sequence[Decision],
    workers: Sequence[Worker],
    mode: ActuatorMode,
    decision_id: str,
    *,
    alive_pods: set[str] | None = None,
) -> tuple[Obj | None, list[ApplyResult]]:
    """The merge patch that applies ``decisions`` to ``cluster`` (None: nothing to write), and per-group notes.

    Pure. Busy workers are never listed for deletion even if a decision names one (the policy must not, but
    the actuator is the last line). ``alive_pods`` keeps still-existing entries of an earlier
    ``workersToDelete`` so KubeRay still deletes them.
    """
    check_mode(cluster, mode)
    meta = cluster.get("metadata", {})
    if (meta.get("annotations") or {}).get(DECISION_ANNOTATION) == decision_id:
        return None, [ApplyResult(d.group, False, f"decision {decision_id} already applied") for d in decisions]
    specs: list[Obj] = copy.deepcopy(cluster.get("spec", {}).get("workerGroupSpecs") or [])
    by_name = {s.get("groupName"): s for s in specs}
    busy = {w.id for w in workers if w.busy}
    results: list[ApplyResult] = []
    reasons: list[str] = []
    for d in decisions:
        spec = by_name.get(d.group)
        if spec is None:
            raise ActuatorError(
                f"RayCluster {meta.get('name')!r} has no workerGroupSpec named {d.group!r} "
                f"(it has {sorted(str(n) for n in by_name)}); make the sensor's groups match the cluster's"
            )
        lo, hi = int(spec.get("minReplicas", 0) or 0), int(spec.get("maxReplicas", 2**31 - 1))
        if mode is ActuatorMode.KUBERAY_COOPERATE:
            want = min(max(d.target, 0), hi)
            if want == lo:
                results.append(ApplyResult(d.group, False, f"minReplicas already {lo}"))
                continue
            spec["minReplicas"] = want
            results.append(ApplyResult(d.group, True, f"minReplicas {lo} -> {want}"))
            reasons.append(f"{d.group}: minReplicas {want}")
            continue
        # own
        target = min(max(d.target, lo), hi)
        remove = [p for p in d.remove if p not in busy]
        refused = [p for p in d.remove if p in busy]
        if refused:
            # Keep the busy pods: shrink only by the idle pods we may delete.
            target = max(target, d.current - len(remove))
        # Delete exactly as many pods as the group shrinks by (the cluster's minReplicas may hold it higher),
        # so KubeRay never has to replace a deleted pod or pick one itself.
        remove = remove[: max(0, d.current - target)]
        strategy = spec.get("scaleStrategy") or {}
        old = list(strategy.get("workersToDelete") or [])
        kept = [p for p in old if alive_pods is None or p in alive_pods]
        to_delete = kept + [p for p in remove if p not in kept]
        current_replicas = spec.get("replicas")
        if current_replicas == target and to_delete == old:
            results.append(ApplyResult(d.group, False, f"replicas already {target}"))
            continue
        spec["replicas"] = target
        spec["scaleStrategy"] = {**strategy, "workersToDelete": to_delete}
        note = f"replicas {current_replicas} -> {target}"
        if remove:
            note += f", workersToDelete += {remove}"
        if refused:
            note += f" (refused to delete busy {refused})"
        results.append(ApplyResult(d.group, True, note))
        reasons.append(f"{d.group}: {note}")
    if not any(r.applied for r in results):
        return None, results
    if mode is ActuatorMode.KUBERAY_COOPERATE:
        # KubeRay's autoscaler removes pods with a JSON patch that *replaces* a group's scaleStrategy, which a
        # real API server refuses (RFC 6902) where the group has none, as the ray-cluster chart renders it:
        # the idle pods would never go. Give each group an empty one to replace; which pods go stays its choice.
        for spec in specs:
            spec.setdefault("scaleStrategy", {})
    patch: Obj = {
        "metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": {DECISION_ANNOTATION: decision_id, REASON_ANNOTATION: "; ".join(reasons)[:500]},
        },
        "spec": {"workerGroupSpecs": specs},
    }
    return patch, results


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, to preview what a patch makes of an object (tests validate the result against the CRD)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(copy.deepcopy(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class KubeRayActuator(Actuator):
    """Reads and patches one RayCluster through the kubernetes client (an ``ApiClient``, e.g. from
    ``KubernetesHook(conn_id).api_client``)."""

    def __init__(
        self,
        api_client: Any,
        *,
        name: str,
        namespace: str,
        mode: ActuatorMode,
        attempts: int = 6,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if mode not in (ActuatorMode.KUBERAY_COOPERATE, ActuatorMode.KUBERAY_OWN):
            raise ValueError(f"KubeRayActuator needs a kuberay-* mode, got {mode.value!r}")
        if not name or not namespace:
            raise ValueError("raycluster_name and namespace are required for the kuberay actuators")
        from kubernetes import client

        self.mode = mode
        self.name = name
        self.namespace = namespace
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def _retry(self, call: Callable[[], Any], what: str) -> Any:
        """``call`` with retries on 409 (re-read and recompute), 429 (after Retry-After) and 5xx; then a clear error."""
        policy = retrying(
            f"{what} on RayCluster {self.namespace}/{self.name}",
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            retryable=is_retryable,
            **({"sleep": self._sleep} if self._sleep is not None else {}),
        )
        try:
            return policy(call)
        except Exception as exc:
            status = _status_of(exc)
            body = getattr(exc, "body", None) or str(exc)
            raise ActuatorError(
                f"{what} on RayCluster {self.namespace}/{self.name} failed"
                + (f" ({status})" if status else "")
                + f": {str(body)[:500]}"
            ) from exc

    def read_cluster(self) -> Obj:
        return dict(self.custom.get_namespaced_custom_object(API_GROUP, VERSION, self.namespace, PLURAL, self.name))

    def _pods(self) -> list[Obj]:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"ray.io/cluster={self.name},ray.io/node-type=worker"
        )
        return [self.core.api_client.sanitize_for_serialization(p) for p in pods.items]

    def members(self) -> list[Member]:
        cluster = self._retry(self.read_cluster, "read")
        check_mode(cluster, self.mode)
        pods = self._retry(self._pods, "list pods")
        return members_from_pods(pods, cluster)

    def apply(self, decisions: Sequence[Decision], workers: Sequence[Worker], decision_id: str) -> list[ApplyResult]:
        outcome: list[list[ApplyResult]] = []

        def attempt() -> None:
            cluster = self.read_cluster()
            alive = {m.id for m in members_from_pods(self._pods(), {})}
            patch, results = plan_patch(cluster, decisions, workers, self.mode, decision_id, alive_pods=alive)
            outcome[:] = [results]
            if patch is None:
                return
            self.custom.patch_namespaced_custom_object(
                API_GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                patch,
                _content_type="application/merge-patch+json",
            )

        self._retry(attempt, "patch")
        return outcome[0] if outcome else []
