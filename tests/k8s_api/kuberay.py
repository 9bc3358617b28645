"""A small KubeRay operator for the mock server: RayCluster spec in, head and worker pods out.

It follows what KubeRay's RayCluster controller does to pods (``reconcilePods`` in
ray-operator/controllers/ray/raycluster_controller.go at commit feeaf72), because that is what an actuator's
patches act through:

* one head pod; per worker group, ``replicas * numOfHosts`` worker pods built from the group's template, with
  KubeRay's labels (``ray.io/cluster``, ``ray.io/group``, ``ray.io/node-type``) and an owner reference;
* the pods named in ``scaleStrategy.workersToDelete`` are deleted first, whatever ``replicas`` says (the list
  itself is left in the spec: clearing it is the scaler's job);
* missing pods are created; surplus pods are deleted at random **only when in-tree autoscaling is off**
  (with it on, only the autoscaler removes pods, through ``workersToDelete``);
* Ray pods that ended (preempted, evicted, failed) are deleted and replaced;
* status: desired/available/ready worker replicas, min/max, ``observedGeneration``, ``state: ready``;
* deleting the RayCluster deletes its pods (garbage collection of owned objects).

It reconciles in the background after every spec change (as the real operator does, a little later), and
:meth:`MockKubeServer.reconcile_rayclusters` runs it at once for tests that want no waiting.
"""

from __future__ import annotations

import copy
import random
import secrets
from typing import TYPE_CHECKING, Any

from tests.k8s_api.kubelet import PodScript

if TYPE_CHECKING:
    from tests.k8s_api.server import MockKubeServer

GROUP = "ray.io"
HEAD_GROUP = "headgroup"


def _suffix() -> str:
    return secrets.token_hex(3)[:5]


def _pod_from_template(cluster: dict[str, Any], template: dict[str, Any], group: str, node_type: str) -> dict:
    meta = cluster["metadata"]
    name = meta["name"]
    pod_name = f"{name}-head-{_suffix()}" if node_type == "head" else f"{name}-{group}-worker-{_suffix()}"
    template = copy.deepcopy(template)
    labels = {
        **(template.get("metadata", {}).get("labels") or {}),
        "ray.io/cluster": name,
        "ray.io/group": group,
        "ray.io/node-type": node_type,
        "ray.io/is-ray-node": "yes",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    metadata: dict[str, Any] = {
        "name": pod_name,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "name": name,
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if template.get("metadata", {}).get("annotations"):
        metadata["annotations"] = template["metadata"]["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def _alive(pod: dict[str, Any]) -> bool:
    return pod["status"].get("phase") not in ("Succeeded", "Failed")


def _ready(pod: dict[str, Any]) -> bool:
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or []
    )


def reconcile(server: MockKubeServer, namespace: str, name: str) -> None:
    cluster = server.get("rayclusters", name, namespace, group=GROUP)
    if cluster is None:
        return
    spec = cluster["spec"]
    pods_rt = server.resource_type("pods")
    owned = [
        p
        for p in server.objects("pods", namespace)
        if (p["metadata"].get("labels") or {}).get("ray.io/cluster") == name
    ]

    def create(pod: dict[str, Any]) -> None:
        server.script_pod(pod["metadata"]["name"], PodScript(keep_running=True))
        server.create(pods_rt, namespace, pod, None, None)

    for pod in owned:  # KubeRay deletes finished or failed Ray pods and creates replacements
        if not _alive(pod):
            server._delete_object(pods_rt, namespace, pod["metadata"]["name"])
    owned = [p for p in owned if _alive(p)]
    heads = [p for p in owned if p["metadata"]["labels"].get("ray.io/node-type") == "head" and _alive(p)]
    if not heads and not spec.get("suspend"):
        create(_pod_from_template(cluster, spec["headGroupSpec"]["template"], HEAD_GROUP, "head"))
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    desired_total = available = ready = lo = hi = 0
    for group in spec.get("workerGroupSpecs") or []:
        group_name = group["groupName"]
        hosts = max(1, int(group.get("numOfHosts") or 1))
        expected = 0 if group.get("suspend") or spec.get("suspend") else int(group.get("replicas") or 0) * hosts
        desired_total += expected
        lo += int(group.get("minReplicas") or 0) * hosts
        hi += int(group.get("maxReplicas") or 0) * hosts
        workers = [
            p
            for p in owned
            if p["metadata"]["labels"].get("ray.io/group") == group_name
            and p["metadata"]["labels"].get("ray.io/node-type") == "worker"
            and _alive(p)
        ]
        to_delete = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
        for pod in workers:
            if pod["metadata"]["name"] in to_delete:
                server._delete_object(pods_rt, namespace, pod["metadata"]["name"])
        running = [p for p in workers if p["metadata"]["name"] not in to_delete]
        diff = expected - len(running)
        for _ in range(max(0, diff)):
            create(_pod_from_template(cluster, group["template"], group_name, "worker"))
        if diff < 0 and not autoscaling:
            for pod in random.sample(running, -diff):
                server._delete_object(pods_rt, namespace, pod["metadata"]["name"])
    for pod in server.objects("pods", namespace):
        labels = pod["metadata"].get("labels") or {}
        if labels.get("ray.io/cluster") == name and labels.get("ray.io/node-type") == "worker" and _alive(pod):
            available += 1
            ready += int(_ready(pod))
    status = {
        **(cluster.get("status") or {}),
        "desiredWorkerReplicas": desired_total,
        "availableWorkerReplicas": available,
        "readyWorkerReplicas": ready,
        "minWorkerReplicas": lo,
        "maxWorkerReplicas": hi,
        "observedGeneration": cluster["metadata"].get("generation", 1),
        "state": "suspended" if spec.get("suspend") else "ready",
    }
    server.set_status("rayclusters", name, namespace, status, group=GROUP)


def delete_owned_pods(server: MockKubeServer, namespace: str, name: str) -> None:
    pods_rt = server.resource_type("pods")
    for pod in server.objects("pods", namespace):
        if (pod["metadata"].get("labels") or {}).get("ray.io/cluster") == name:
            try:
                server._delete_object(pods_rt, namespace, pod["metadata"]["name"])
            except Exception:  # already gone
                continue
