"""What the scheduler and the kubelet would write into a pod's status, as plain functions over dicts.

A test scripts a pod's life with a :class:`PodScript` (logs, exit code, or a :class:`Disruption` such as a
preemption or an eviction); the mock server plays it against the stored pod. The status shapes follow what a
real kubelet (Kubernetes 1.3x, ``PodDisruptionConditions`` on) reports, so code that classifies pods reads the
same fields it will read in a cluster: ``status.phase``, ``status.reason``, the ``DisruptionTarget`` condition
and each container's ``state.terminated.exitCode`` / ``reason``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: KubernetesPodOperator's XCom sidecar: it keeps running after the main container until KPO kills it.
XCOM_SIDECAR = "airflow-xcom-sidecar"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(t: dt.datetime) -> str:
    """The kubelet's log timestamp format (``timestamps=true``)."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


@dataclass(frozen=True)
class Disruption:
    """How Kubernetes takes a pod away. The presets are the shapes a real cluster produces."""

    #: Reason of the ``DisruptionTarget`` condition; ``None`` adds no condition (an old cluster, a lost node).
    condition_reason: str | None = "PreemptionByScheduler"
    #: ``status.reason`` of the pod (``Evicted`` for a kubelet eviction); ``None`` leaves it unset.
    pod_reason: str | None = None
    message: str = "Preempted in order to admit critical pod"
    #: Exit code of the killed containers: 143 after SIGTERM, 137 after SIGKILL.
    exit_code: int = 143
    #: Whether the pod object is then deleted (preemption, the Eviction API, the taint manager all delete it).
    vanish: bool = False
    #: Phase after the kill; ``Unknown`` models a lost node.
    phase: str = "Failed"

    @classmethod
    def preempted(cls, *, vanish: bool = False) -> Disruption:
        return cls("PreemptionByScheduler", None, "Preempted in order to admit critical pod", 143, vanish)

    @classmethod
    def evicted(cls) -> Disruption:
        """A kubelet node-pressure eviction: the pod stays, Failed with reason Evicted."""
        return cls(
            "TerminationByKubelet",
            "Evicted",
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.",
            137,
        )

    @classmethod
    def evicted_by_api(cls, *, vanish: bool = True) -> Disruption:
        """A drain or the cluster autoscaler using the Eviction API."""
        return cls("EvictionByEvictionAPI", None, "Eviction API: evicting", 143, vanish)

    @classmethod
    def node_tainted(cls, *, vanish: bool = True) -> Disruption:
        return cls("DeletionByTaintManager", None, "Taint manager: deleting due to NoExecute taint", 143, vanish)

    @classmethod
    def node_lost(cls) -> Disruption:
        return cls(None, "NodeLost", "Node mock-node which was running pod is unresponsive", 137, False, "Unknown")


#: Names accepted where a :class:`Disruption` is expected, for terse tests.
DISRUPTION_PRESETS = {
    "preempted": Disruption.preempted,
    "evicted": Disruption.evicted,
    "evicted_by_api": Disruption.evicted_by_api,
    "node_tainted": Disruption.node_tainted,
    "node_lost": Disruption.node_lost,
}


def as_disruption(value: Disruption | str | tuple[str, str] | None) -> Disruption | None:
    """A :class:`Disruption`, a preset name, or ``("DisruptionTarget", reason)`` for any condition reason."""
    if value is None or isinstance(value, Disruption):
        return value
    if isinstance(value, tuple):
        kind, reason = value
        if kind != "DisruptionTarget":
            raise ValueError(f"only DisruptionTarget conditions disrupt pods, not {kind!r}")
        return Disruption(reason, None, f"{reason}: mock disruption", 143, False)
    try:
        return DISRUPTION_PRESETS[value]()
    except KeyError:
        raise ValueError(f"unknown disruption {value!r}; use one of {sorted(DISRUPTION_PRESETS)}") from None


_UNSET: Any = object()


@dataclass
class PodScript:
    """The life of one pod, played by the mock kubelet once the pod is created."""

    logs: Sequence[str] = ()
    exit_code: int = 0
    #: ``state.terminated.reason``; default ``Completed`` for 0, else ``Error`` (use ``OOMKilled`` for OOM).
    termination_reason: str | None = None
    termination_message: str | None = None
    #: Ends the pod this way after the logs, instead of the normal exit.
    disruption: Disruption | None = None
    #: JSON served by the XCom sidecar's ``cat /airflow/xcom/return.json`` (unset: the empty-result marker).
    xcom: Any = _UNSET
    pending_s: float = 0.0
    line_interval_s: float = 0.0
    #: Stays Pending with ``PodScheduled=False`` (no node fits), whatever the nodes say.
    unschedulable: bool = False
    #: Container the logs go to; default the first one that is not the XCom sidecar.
    container: str | None = None
    #: After the logs the container keeps running until the pod is disrupted, finished or deleted (a Ray worker).
    keep_running: bool = False
    #: Filled in by the server: the pod this script was played on.
    played_on: str | None = field(default=None, compare=False)

    @property
    def has_xcom(self) -> bool:
        return self.xcom is not _UNSET


# --- scheduling ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str]
    taints: Sequence[Mapping[str, str]] = ()
    allocatable: Mapping[str, str] = field(default_factory=lambda: {"cpu": "8", "memory": "32Gi", "pods": "110"})

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": dict(self.labels)},
            "spec": {"taints": [dict(t) for t in self.taints]} if self.taints else {},
            "status": {
                "allocatable": dict(self.allocatable),
                "capacity": dict(self.allocatable),
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        }


#: The project's node pools: a tainted, non-preemptible pool for training and a spot pool (with a GPU node)
#: for Ray workers and drivers (docs/kubernetes.md).
DEFAULT_NODES = (
    Node(
        "stateful-node-1",
        {"mlk8s.io/pool": "stateful", "kubernetes.io/hostname": "stateful-node-1"},
        ({"key": "mlk8s.io/pool", "value": "stateful", "effect": "NoSchedule"},),
    ),
    Node("stateless-node-1", {"mlk8s.io/pool": "stateless", "kubernetes.io/hostname": "stateless-node-1"}),
    Node(
        "stateless-gpu-node-1",
        {
            "mlk8s.io/pool": "stateless",
            "nvidia.com/gpu.present": "true",
            "kubernetes.io/hostname": "stateless-gpu-node-1",
        },
        ({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},),
        {"cpu": "8", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "1"},
    ),
)


def _tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, str]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        op = tol.get("operator", "Equal")
        if op == "Exists" and (not tol.get("key") or tol["key"] == taint["key"]):
            return True
        if op == "Equal" and tol.get("key") == taint["key"] and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression_holds(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    value = labels.get(key)
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and value is not None:
        return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])
    return False


def _affinity_allows(spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(all(_expression_holds(e, labels) for e in term.get("matchExpressions") or []) for term in terms)


def _requests_gpu(spec: Mapping[str, Any]) -> bool:
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        if any("nvidia.com/gpu" in (res.get(k) or {}) for k in ("limits", "requests")):
            return True
    return False


def schedule(spec: Mapping[str, Any], nodes: Sequence[Node]) -> tuple[Node | None, str]:
    """The node the pod lands on, or ``None`` and the scheduler's FailedScheduling message.

    Checks what decides placement in this project: nodeSelector, required node affinity, NoSchedule /
    NoExecute taints against tolerations, and GPUs (only nodes that have ``nvidia.com/gpu``). It ignores
    CPU and memory fit and preferred affinity.
    """
    taint_misses, selector_misses, gpu_misses = 0, 0, 0
    for node in nodes:
        selector = spec.get("nodeSelector") or {}
        if any(node.labels.get(k) != v for k, v in selector.items()) or not _affinity_allows(spec, node.labels):
            selector_misses += 1
            continue
        untolerated = [
            t
            for t in node.taints
            if t.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(spec.get("tolerations") or [], t)
        ]
        if untolerated:
            taint_misses += 1
            continue
        if _requests_gpu(spec) and "nvidia.com/gpu" not in node.allocatable:
            gpu_misses += 1
            continue
        return node, ""
    reasons = []
    if selector_misses:
        reasons.append(f"{selector_misses} node(s) didn't match Pod's node affinity/selector")
    if taint_misses:
        reasons.append(f"{taint_misses} node(s) had untolerated taint")
    if gpu_misses:
        reasons.append(f"{gpu_misses} Insufficient nvidia.com/gpu")
    return None, f"0/{len(nodes)} nodes are available: {', '.join(reasons)}."


# --- status builders ----------------------------------------------------------------------------------------


def condition(kind: str, status: bool, t: dt.datetime, reason: str | None = None, message: str | None = None) -> dict:
    cond: dict[str, Any] = {"type": kind, "status": "True" if status else "False", "lastTransitionTime": rfc3339(t)}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    conditions = [c for c in status.get("conditions") or [] if c["type"] != cond["type"]]
    conditions.append(cond)
    status["conditions"] = conditions


def container_id(pod_uid: str, name: str) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()


def pending_status(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    qos = "BestEffort"
    for c in spec.get("containers", []):
        res = c.get("resources") or {}
        if res.get("requests") or res.get("limits"):
            qos = "Burstable"
    return {"phase": "Pending", "qosClass": qos}


def unschedulable(status: dict[str, Any], message: str) -> None:
    set_condition(status, condition("PodScheduled", False, now(), "Unschedulable", message))


def scheduled(pod: dict[str, Any], node: str) -> None:
    t = now()
    status = pod["status"]
    set_condition(status, condition("PodScheduled", True, t))
    status.update({"hostIP": "10.0.0.10", "podIP": "10.244.0.23", "podIPs": [{"ip": "10.244.0.23"}]})
    status["startTime"] = rfc3339(t)
    status["containerStatuses"] = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": "ContainerCreating"}},
            "lastState": {},
        }
        for c in pod["spec"]["containers"]
    ]


def started(pod: dict[str, Any]) -> None:
    t = now()
    status = pod["status"]
    status["phase"] = "Running"
    for cs in status["containerStatuses"]:
        cs.update(
            {
                "ready": True,
                "started": True,
                "imageID": f"docker.io/library/{cs['image']}@sha256:" + "0" * 64,
                "containerID": container_id(pod["metadata"]["uid"], cs["name"]),
                "state": {"running": {"startedAt": rfc3339(t)}},
            }
        )
    for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"):
        set_condition(status, condition(kind, True, t))


def terminate_container(
    pod: dict[str, Any], name: str, exit_code: int, reason: str | None = None, message: str | None = None
) -> None:
    t = now()
    for cs in pod["status"].get("containerStatuses") or []:
        if cs["name"] != name or "terminated" in cs["state"]:
            continue
        started_at = (cs["state"].get("running") or {}).get("startedAt", rfc3339(t))
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": started_at,
            "finishedAt": rfc3339(t),
        }
        if "containerID" in cs:
            terminated["containerID"] = cs["containerID"]
        if message:
            terminated["message"] = message
        cs.update({"ready": False, "started": False, "state": {"terminated": terminated}})


def settle_phase(pod: dict[str, Any]) -> None:
    """Derive the phase and readiness from the containers, as the kubelet does for restartPolicy Never."""
    status = pod["status"]
    statuses = status.get("containerStatuses") or []
    terminated = [cs["state"]["terminated"] for cs in statuses if "terminated" in cs["state"]]
    t = now()
    if statuses and len(terminated) == len(statuses):
        ok = all(term["exitCode"] == 0 for term in terminated)
        status["phase"] = "Succeeded" if ok else "Failed"
        reason = "PodCompleted" if ok else "PodFailed"
        set_condition(status, condition("ContainersReady", False, t, reason))
        set_condition(status, condition("Ready", False, t, reason))
        set_condition(status, condition("PodReadyToStartContainers", False, t))
    elif terminated:
        not_ready = [cs["name"] for cs in statuses if not cs.get("ready")]
        message = f"containers with unready status: [{' '.join(not_ready)}]"
        set_condition(status, condition("ContainersReady", False, t, "ContainersNotReady", message))
        set_condition(status, condition("Ready", False, t, "ContainersNotReady", message))


def disrupt(pod: dict[str, Any], disruption: Disruption) -> None:
    status = pod["status"]
    t = now()
    if disruption.condition_reason:
        set_condition(status, condition("DisruptionTarget", True, t, disruption.condition_reason, disruption.message))
    for cs in status.get("containerStatuses") or []:
        if "running" in cs["state"]:
            terminate_container(pod, cs["name"], disruption.exit_code)
        elif "waiting" in cs["state"]:
            cs["state"] = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was terminated",
                    "finishedAt": rfc3339(t),
                }
            }
    settle_phase(pod)
    status["phase"] = disruption.phase
    if disruption.pod_reason:
        status["reason"] = disruption.pod_reason
        status["message"] = disruption.message


def main_container(pod: Mapping[str, Any], preferred: str | None = None) -> str:
    names = [c["name"] for c in pod["spec"]["containers"]]
    if preferred:
        if preferred not in names:
            raise ValueError(f"pod has no container {preferred!r}: {names}")
        return preferred
    return next(n for n in names if n != XCOM_SIDECAR)


def event(pod: Mapping[str, Any], reason: str, message: str, kind: str = "Normal", component: str = "kubelet") -> dict:
    meta = pod["metadata"]
    t = now()
    digest = hashlib.sha1(f"{meta['uid']}{reason}{t.isoformat()}".encode()).hexdigest()[:16]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{digest}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "firstTimestamp": rfc3339(t),
        "lastTimestamp": rfc3339(t),
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": "",
    }
