"""A KubeRay operator for the mock server: RayCluster spec in, head Service, head and worker pods out.

It follows KubeRay's RayCluster controller (``rayClusterReconcile``, ``reconcilePods``, ``calculateStatus`` in
ray-operator/controllers/ray/raycluster_controller.go at commit feeaf72), because that is what the Ray pool
sensor's actuator acts through; the pods and objects themselves come from :mod:`tests.k8s_api.kuberay_pods`.

* with in-tree autoscaling, the autoscaler's ServiceAccount, Role and RoleBinding; always the head Service;
* one head pod; per worker group ``clamp(replicas, minReplicas, maxReplicas) * numOfHosts`` worker pods;
* Ray pods that ended (phase Succeeded/Failed, or a Ray container terminated under restartPolicy Never) are
  deleted first, and nothing is created in that round;
* the pods named in ``scaleStrategy.workersToDelete`` are deleted, whatever ``replicas`` says (the list itself
  is left in the spec: clearing it is the scaler's job);
* missing pods are created; surplus pods are deleted (the first ones listed) **only when in-tree autoscaling
  is off** (with it on, only the autoscaler removes pods, through ``workersToDelete``);
* status: ``desiredWorkerReplicas``, ``availableWorkerReplicas`` (Running workers), ``readyWorkerReplicas``
  (Running and Ready), ``min``/``maxWorkerReplicas``, ``observedGeneration``, ``state: ready`` once all pods
  run and are ready, ``head`` (pod name and IP, service name), conditions ``HeadPodReady`` and
  ``RayClusterProvisioned``;
* deleting the RayCluster deletes its pods (garbage collection of owned objects).

Pods are deleted through the API path (graceful for pods the process kubelet runs). With the process
kubelet the pods really run (real ``ray start``); without it each is scripted to stay Running. It reconciles
shortly after every change to a RayCluster or to one of its pods, as the real operator's watches make it do;
:meth:`MockKubeServer.reconcile_rayclusters` runs it at once for tests that want no waiting.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from tests.k8s_api import kuberay_pods
from tests.k8s_api.errors import ApiError
from tests.k8s_api.kubelet import PodScript, now, rfc3339

if TYPE_CHECKING:
    from tests.k8s_api.server import MockKubeServer

GROUP = kuberay_pods.GROUP
Obj = dict[str, Any]


def _alive(pod: Obj) -> bool:
    return pod["status"].get("phase") not in ("Succeeded", "Failed")


def _ready(pod: Obj) -> bool:
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or []
    )


def _should_delete(pod: Obj) -> bool:
    """``shouldDeletePod``: ended pods, and Running pods whose Ray container ended for good."""
    if not _alive(pod):
        return True
    ray = pod["spec"]["containers"][0]["name"]
    terminated = next(
        (cs["state"].get("terminated") for cs in pod["status"].get("containerStatuses") or [] if cs["name"] == ray),
        None,
    )
    return (
        pod["status"].get("phase") == "Running"
        and terminated is not None
        and pod["spec"].get("restartPolicy") == "Never"
    )


def desired_replicas(group: Obj) -> int:
    """``GetWorkerGroupDesiredReplicas``: replicas within [minReplicas, maxReplicas], times numOfHosts."""
    if group.get("suspend"):
        return 0
    lo = int(group.get("minReplicas") or 0)
    hi = int(group["maxReplicas"]) if group.get("maxReplicas") is not None else 2**31 - 1
    replicas = group.get("replicas")
    wanted = lo if replicas is None or int(replicas) < lo else min(int(replicas), hi)
    return wanted * max(1, int(group.get("numOfHosts") or 1))


def _delete(server: MockKubeServer, namespace: str, name: str) -> None:
    try:
        server.delete(server.resource_type("pods"), namespace, name, None)
    except ApiError as exc:
        if exc.code != 404:
            raise


def _create(server: MockKubeServer, obj: Obj) -> Obj | None:
    """Create ``obj`` unless it exists (the controller's ``CreateOrUpdate`` for objects it owns)."""
    meta = obj["metadata"]
    group = obj["apiVersion"].rpartition("/")[0]
    plural = {
        "Pod": "pods",
        "Service": "services",
        "ServiceAccount": "serviceaccounts",
        "Role": "roles",
        "RoleBinding": "rolebindings",
    }[obj["kind"]]
    rt = server.resource_type(plural, group)
    if plural == "pods":
        meta["name"] = meta.pop("generateName") + secrets.token_hex(3)[:5]
        if server.process_kubelet is None:
            server.script_pod(meta["name"], PodScript(keep_running=True))
    elif server.get(plural, meta["name"], meta["namespace"], group) is not None:
        return None
    try:
        return server.create(rt, meta["namespace"], obj, None, None)
    except ApiError as exc:
        server.kuberay_errors.append(f"{obj['kind']} {meta['namespace']}/{meta['name']}: {exc.code} {exc.message}")
        return None


def reconcile(server: MockKubeServer, namespace: str, name: str) -> None:
    cluster = server.get("rayclusters", name, namespace, group=GROUP)
    if cluster is None:
        return
    if kuberay_pods.autoscaling(cluster):
        for obj in kuberay_pods.autoscaler_rbac(cluster):
            _create(server, obj)
    _create(server, kuberay_pods.head_service(cluster))
    retry = _reconcile_pods(server, cluster)
    _update_status(server, cluster)
    if retry:
        server._schedule_reconcile((namespace, name), delay_s=1.0)


def _owned(server: MockKubeServer, cluster: Obj) -> list[Obj]:
    meta = cluster["metadata"]
    return [
        p
        for p in server.objects("pods", meta["namespace"])
        if (p["metadata"].get("labels") or {}).get("ray.io/cluster") == meta["name"]
        and not p["metadata"].get("deletionTimestamp")
    ]


def _reconcile_pods(server: MockKubeServer, cluster: Obj) -> bool:
    """One round of ``reconcilePods``; True when it should run again soon (it deleted unhealthy pods)."""
    spec, namespace = cluster["spec"], cluster["metadata"]["namespace"]
    if spec.get("suspend"):
        for pod in _owned(server, cluster):
            _delete(server, namespace, pod["metadata"]["name"])
        return False
    owned = _owned(server, cluster)
    heads = [p for p in owned if p["metadata"]["labels"].get("ray.io/node-type") == "head"]
    if len(heads) == 1 and _should_delete(heads[0]):
        _delete(server, namespace, heads[0]["metadata"]["name"])
        return True
    if not heads:
        _create(server, kuberay_pods.head_pod(cluster))
    for group in spec.get("workerGroupSpecs") or []:
        workers = [
            p
            for p in owned
            if p["metadata"]["labels"].get("ray.io/group") == group["groupName"]
            and p["metadata"]["labels"].get("ray.io/node-type") == "worker"
        ]
        if group.get("suspend"):
            for pod in workers:
                _delete(server, namespace, pod["metadata"]["name"])
            continue
        unhealthy = [p for p in workers if _should_delete(p)]
        for pod in unhealthy:
            _delete(server, namespace, pod["metadata"]["name"])
        if unhealthy:
            return True
        to_delete = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
        for pod_name in sorted(to_delete):
            _delete(server, namespace, pod_name)
        running = [p for p in workers if p["metadata"]["name"] not in to_delete]
        diff = desired_replicas(group) - len(running)
        for _ in range(max(0, diff)):
            _create(server, kuberay_pods.worker_pod(cluster, group))
        if diff < 0 and not kuberay_pods.autoscaling(cluster):
            for pod in running[:-diff]:
                _delete(server, namespace, pod["metadata"]["name"])
    return False


def _update_status(server: MockKubeServer, cluster: Obj) -> None:
    """``calculateStatus``."""
    cluster = (
        server.get("rayclusters", cluster["metadata"]["name"], cluster["metadata"]["namespace"], group=GROUP) or cluster
    )
    spec = cluster["spec"]
    pods = _owned(server, cluster)
    workers = [p for p in pods if p["metadata"]["labels"].get("ray.io/node-type") == "worker"]
    head = next((p for p in pods if p["metadata"]["labels"].get("ray.io/node-type") == "head"), None)
    groups = spec.get("workerGroupSpecs") or []
    desired = sum(desired_replicas(g) for g in groups)
    old = cluster.get("status") or {}
    status: Obj = {
        **old,
        "desiredWorkerReplicas": desired,
        "availableWorkerReplicas": sum(1 for p in workers if p["status"].get("phase") == "Running"),
        "readyWorkerReplicas": sum(1 for p in workers if _ready(p)),
        "minWorkerReplicas": sum(
            int(g.get("minReplicas") or 0) * max(1, int(g.get("numOfHosts") or 1)) for g in groups
        ),
        "maxWorkerReplicas": sum(
            int(g.get("maxReplicas") or 0) * max(1, int(g.get("numOfHosts") or 1)) for g in groups
        ),
        "observedGeneration": cluster["metadata"].get("generation", 1),
        "lastUpdateTime": rfc3339(now()),
    }
    all_ready = bool(pods) and all(_ready(p) for p in pods)
    if spec.get("suspend") and not pods:
        status["state"] = "suspended"
    elif len(pods) == desired + 1 and all_ready:
        status["state"] = "ready"
    conditions = {c["type"]: c for c in old.get("conditions") or []}
    head_ready = head is not None and _ready(head)
    reason = "HeadPodRunningAndReady" if head_ready else "HeadPodNotFound" if head is None else "ContainersNotReady"
    _set_condition(conditions, "HeadPodReady", head_ready, reason, "" if head is not None else "Head Pod not found")
    if conditions.get("RayClusterProvisioned", {}).get("status") != "True":
        _set_condition(
            conditions,
            "RayClusterProvisioned",
            all_ready,
            "AllPodRunningAndReadyFirstTime" if all_ready else "RayClusterPodsProvisioning",
            "All Ray Pods are ready for the first time"
            if all_ready
            else "RayCluster Pods are being provisioned for first time",
        )
    status["conditions"] = list(conditions.values())
    status["head"] = {"serviceName": kuberay_pods.head_service_name(cluster)}
    if head is not None:
        status["head"].update({"podName": head["metadata"]["name"], "podIP": head["status"].get("podIP", "")})
    if _semantic(old) != _semantic(status):
        try:
            server.set_status(
                "rayclusters", cluster["metadata"]["name"], cluster["metadata"]["namespace"], status, group=GROUP
            )
        except ApiError as exc:
            if exc.code != 404:  # deleted meanwhile: nothing to report on
                raise


def _set_condition(conditions: dict[str, Obj], kind: str, value: bool, reason: str, message: str) -> None:
    """A ``metav1.Condition`` (type, status, reason, message, lastTransitionTime), kept when unchanged."""
    status = "True" if value else "False"
    old = conditions.get(kind)
    if old is not None and (old.get("status"), old.get("reason")) == (status, reason):
        return
    conditions[kind] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now()),
    }


def _semantic(status: Obj) -> Obj:
    """A status without timestamps, to skip writes that change nothing (the real controller compares too)."""
    out = {k: v for k, v in status.items() if k != "lastUpdateTime"}
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []
    ]
    return out


def collect_garbage(server: MockKubeServer, namespace: str, uid: str) -> None:
    """Delete what a deleted RayCluster owned (the garbage collector's work): pods, the Service, the RBAC."""
    for plural, group in (
        ("pods", ""),
        ("services", ""),
        ("serviceaccounts", ""),
        ("roles", "rbac.authorization.k8s.io"),
        ("rolebindings", "rbac.authorization.k8s.io"),
    ):
        for obj in server.objects(plural, namespace, group=group):
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                try:
                    server.delete(server.resource_type(plural, group), namespace, obj["metadata"]["name"], None)
                except ApiError as exc:
                    if exc.code != 404:
                        raise
