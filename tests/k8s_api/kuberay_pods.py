"""The objects KubeRay's RayCluster controller builds, as plain functions: head and worker pods, head Service,
the autoscaler's ServiceAccount, Role and RoleBinding.

Followed from ray-operator/controllers/ray/common/{pod,service,rbac}.go at kuberay commit feeaf72 (the commit of
``../shared/schemas/kuberay``), because what our Helm values mean is what these functions make of them:

* labels ``ray.io/cluster``, ``ray.io/node-type``, ``ray.io/group`` (``headgroup`` for the head),
  ``ray.io/is-ray-node``, ``ray.io/identifier`` and the ``app.kubernetes.io`` pair, over the template's labels
  (the three ``ray.io`` keys cannot be overridden); an owner reference to the RayCluster;
* the Ray container (the first one) runs ``/bin/bash -c --`` with ``ulimit -n ...; ray start [--head] ...``
  built from ``rayStartParams`` (sorted flags; ``block`` always; head: ``dashboard-host`` 0.0.0.0;
  ``metrics-export-port`` 8080 and ``dashboard-agent-listen-port`` 52365 unless set; ``num-cpus``, ``memory`` and
  ``num-gpus`` from the container's limits unless set; workers: ``address=<head svc FQDN>:6379``;
  ``no-monitor`` with in-tree autoscaling), unless its command already says ``ray start``;
* the environment KubeRay adds: ``RAY_CLUSTER_NAME``, ``RAY_CLUSTER_NAMESPACE``, ``RAY_CLOUD_INSTANCE_ID`` (the pod
  name), ``RAY_NODE_TYPE_NAME`` (the group), ``KUBERAY_GEN_RAY_START_CMD``, ``RAY_PORT``, ``RAY_ADDRESS``,
  ``FQ_RAY_IP``/``RAY_IP`` on workers, the usage-stats variables;
* ``/dev/shm`` as a memory emptyDir unless mounted; readiness and liveness probes (``httpGet /api/healthz``
  on 52365, Ray >= 2.53); workers get the ``wait-gcs-ready`` init container (``ray health-check`` against the
  head Service every 5 s);
* in-tree autoscaling: the head's ServiceAccount becomes the cluster's name, the ``autoscaler`` sidecar
  (``ray kuberay-autoscaler``, overridden by ``autoscalerOptions``) is appended and shares ``/tmp/ray``; the
  ServiceAccount, a Role (pods get/list/watch/patch, pods/resize patch, rayclusters get/patch) and its
  RoleBinding are created;
* the head Service ``<cluster>-head-svc`` (``headService.name`` if set) is headless with
  ``publishNotReadyAddresses``, selecting the head pod.

Not built: TLS, GCS fault tolerance, Redis, the history-server collector, RayService/RayJob specifics,
``ray.io/overwrite-container-cmd``, multi-host indexing, batch schedulers.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from kubernetes.utils import parse_quantity

Obj = dict[str, Any]

GROUP = "ray.io"
HEAD_GROUP = "headgroup"
GCS_PORT = 6379
AGENT_PORT = 52365
METRICS_PORT = 8080
CLUSTER_DOMAIN = "cluster.local"

_DEFAULT_SERVICE_PORTS = {
    "client": 10001,
    "gcs-server": GCS_PORT,
    "dashboard": 8265,
    "metrics": METRICS_PORT,
    "serve": 8000,
}


def autoscaling(cluster: Mapping[str, Any]) -> bool:
    return bool(cluster["spec"].get("enableInTreeAutoscaling"))


def head_service_name(cluster: Mapping[str, Any]) -> str:
    custom = ((cluster["spec"].get("headGroupSpec") or {}).get("headService") or {}).get("metadata") or {}
    return custom.get("name") or f"{cluster['metadata']['name']}-head-svc"


def head_fqdn(cluster: Mapping[str, Any]) -> str:
    return f"{head_service_name(cluster)}.{cluster['metadata']['namespace']}.svc.{CLUSTER_DOMAIN}"


def head_port(cluster: Mapping[str, Any]) -> str:
    return str(((cluster["spec"].get("headGroupSpec") or {}).get("rayStartParams") or {}).get("port", GCS_PORT))


def _labels(cluster: Mapping[str, Any], node_type: str, group: str, template: Mapping[str, Any]) -> dict[str, str]:
    name = cluster["metadata"]["name"]
    labels = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": name,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/identifier": f"{name}-{node_type}"[:63],
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    for key, value in ((template.get("metadata") or {}).get("labels") or {}).items():
        if key not in ("ray.io/node-type", "ray.io/group", "ray.io/cluster"):
            labels[key] = value
    return labels


def _env(name: str, value: str | None = None, field: str | None = None) -> Obj:
    if field is not None:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field}}}
    return {"name": name, "value": value or ""}


def _has_env(container: Mapping[str, Any], name: str) -> bool:
    return any(e.get("name") == name for e in container.get("env") or [])


def _quantity_int(value: Any) -> int:
    return int(parse_quantity(str(value)))


def ray_start_command(node_type: str, params: Mapping[str, Any], resources: Mapping[str, Any]) -> str:
    """``generateRayStartCommand``: resources fill unset params, flags sorted, booleans as bare flags."""
    params = {k: str(v) for k, v in params.items()}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if "num-cpus" not in params:
        cpu = limits.get("cpu") or requests.get("cpu")
        if cpu is not None and _quantity_int(cpu) != 0:
            params["num-cpus"] = str(_quantity_int(cpu))
    if "memory" not in params and limits.get("memory") is not None:
        params["memory"] = str(_quantity_int(limits["memory"]))
    if "num-gpus" not in params:
        for key in sorted(limits):
            if key.endswith("gpu") and _quantity_int(limits[key]) != 0:
                params["num-gpus"] = str(_quantity_int(limits[key]))
    flags = ""
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in ("log-color", "include-dashboard", "include-log-monitor"):
            if value.lower() == "true":
                flags += f" --{key} "
        else:
            flags += f" --{key}={value} "
    return f"ray start --head {flags}" if node_type == "head" else f"ray start {flags}"


def _start_params(cluster: Mapping[str, Any], node_type: str, params: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(params or {})
    if node_type == "worker":
        params.setdefault("address", f"{head_fqdn(cluster)}:{head_port(cluster)}")
    else:
        params.setdefault("dashboard-host", "0.0.0.0")
        if autoscaling(cluster):
            params["no-monitor"] = "true"
    params.setdefault("metrics-export-port", str(METRICS_PORT))
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", str(AGENT_PORT))
    return params


def _add_empty_dir(pod_spec: Obj, container: Obj, name: str, path: str, medium: str = "") -> None:
    if any(m.get("mountPath") == path for m in container.get("volumeMounts") or []):
        return
    if not any(v.get("name") == name for v in pod_spec.get("volumes") or []):
        empty: Obj = {"medium": medium} if medium else {}
        if medium == "Memory":
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory") or (
                (container.get("resources") or {}).get("requests") or {}
            ).get("memory")
            if limit is not None:
                empty["sizeLimit"] = limit
        pod_spec.setdefault("volumes", []).append({"name": name, "emptyDir": empty})
    container.setdefault("volumeMounts", []).append({"name": name, "mountPath": path})


def _probes(container: Obj) -> None:
    action = {"httpGet": {"path": "/api/healthz", "port": AGENT_PORT}}
    container.setdefault(
        "livenessProbe",
        {
            **action,
            "initialDelaySeconds": 30,
            "timeoutSeconds": 5,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 120,
        },
    )
    container.setdefault(
        "readinessProbe",
        {
            **action,
            "initialDelaySeconds": 10,
            "timeoutSeconds": 5,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 10,
        },
    )


def autoscaler_container(cluster: Mapping[str, Any], image: str) -> Obj:
    """``BuildAutoscalerContainer`` merged with ``autoscalerOptions``."""
    start = "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
    container: Obj = {
        "name": "autoscaler",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            _env("RAY_CLUSTER_NAME", field="metadata.labels['ray.io/cluster']"),
            _env("RAY_CLUSTER_NAMESPACE", field="metadata.namespace"),
            _env("RAY_HEAD_POD_NAME", field="metadata.name"),
            _env("KUBERAY_CRD_VER", "v1"),
            _env("KUBERAY_GEN_AUTOSCALER_START_CMD", start),
        ],
        "command": ["/bin/bash", "-c", "--"],
        "args": [start],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "500m", "memory": "512Mi"}},
    }
    options = cluster["spec"].get("autoscalerOptions") or {}
    for key in ("resources", "image", "imagePullPolicy", "securityContext", "command", "args"):
        if options.get(key):
            container[key] = copy.deepcopy(options[key])
    for key in ("env", "envFrom", "volumeMounts"):
        if options.get(key):
            container.setdefault(key, []).extend(copy.deepcopy(options[key]))
    return container


def _metadata(
    cluster: Mapping[str, Any], template: Mapping[str, Any], generate_name: str, labels: dict[str, str]
) -> Obj:
    meta = cluster["metadata"]
    out: Obj = {
        "generateName": generate_name,
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    annotations = (template.get("metadata") or {}).get("annotations")
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def _ray_container(pod_spec: Obj, cluster: Mapping[str, Any], node_type: str, params: Mapping[str, Any]) -> None:
    """``BuildPod`` for the Ray container: shm, the generated command, KubeRay's env, probes."""
    container = pod_spec["containers"][0]
    _add_empty_dir(pod_spec, container, "shared-mem", "/dev/shm", "Memory")
    existing = " ".join(container.get("command") or []) + " " + " ".join(container.get("args") or [])
    start = ray_start_command(node_type, params, container.get("resources") or {})
    if "ray start" not in existing:
        generated = f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {start}"
        cmd = " ".join(f" {c} " for c in (container.get("command") or []) + (container.get("args") or []))
        container["command"] = ["/bin/bash", "-c", "--"]
        container["args"] = [f"{cmd} && {generated}" if cmd.strip() else generated]
    env = container.setdefault("env", [])
    address_host = "127.0.0.1"
    if node_type == "worker":
        address_host = head_fqdn(cluster)
        env.extend([_env("FQ_RAY_IP", address_host), _env("RAY_IP", address_host.split(".")[0])])
    env.extend(
        [
            _env("RAY_CLUSTER_NAME", field="metadata.labels['ray.io/cluster']"),
            _env("RAY_CLUSTER_NAMESPACE", field="metadata.namespace"),
            _env("RAY_CLOUD_INSTANCE_ID", field="metadata.name"),
            _env("RAY_NODE_TYPE_NAME", field="metadata.labels['ray.io/group']"),
            _env("KUBERAY_GEN_RAY_START_CMD", start),
        ]
    )
    if not _has_env(container, "RAY_PORT"):
        env.append(_env("RAY_PORT", head_port(cluster)))
    if not _has_env(container, "RAY_ADDRESS"):
        env.append(_env("RAY_ADDRESS", f"{address_host}:{head_port(cluster)}"))
    if not _has_env(container, "RAY_USAGE_STATS_KUBERAY_IN_USE"):
        env.append(_env("RAY_USAGE_STATS_KUBERAY_IN_USE", "1"))
    if node_type == "head":
        env.append(_env("RAY_USAGE_STATS_EXTRA_TAGS", "kuberay_version=v1.6.0;kuberay_crd=RayCluster"))
    if not _has_env(container, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"):
        env.append(_env("RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1"))
    ports = container.setdefault("ports", [])
    if not any(p.get("name") == "metrics" for p in ports):
        ports.append({"name": "metrics", "containerPort": METRICS_PORT})
    _probes(container)


def head_pod(cluster: Mapping[str, Any]) -> Obj:
    spec = cluster["spec"]["headGroupSpec"]
    template = copy.deepcopy(spec["template"])
    pod_spec = template["spec"]
    name = cluster["metadata"]["name"]
    params = _start_params(cluster, "head", spec.get("rayStartParams") or {})
    if autoscaling(cluster):
        pod_spec["serviceAccountName"] = pod_spec.get("serviceAccountName") or name
        ray = pod_spec["containers"][0]
        pod_spec["containers"].append(autoscaler_container(cluster, ray["image"]))
    _ray_container(pod_spec, cluster, "head", params)
    if autoscaling(cluster):
        ray, scaler = pod_spec["containers"][0], pod_spec["containers"][-1]
        _add_empty_dir(pod_spec, ray, "ray-logs", "/tmp/ray")
        _add_empty_dir(pod_spec, scaler, "ray-logs", "/tmp/ray")
    labels = _labels(cluster, "head", HEAD_GROUP, template)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(cluster, template, f"{name}-head-", labels),
        "spec": pod_spec,
    }


def _wait_gcs_ready(ray: Mapping[str, Any], fqdn: str, port: str) -> Obj:
    script = f"""
					SECONDS=0
					while true; do
						if (( SECONDS <= 120 )); then
							if ray health-check --address {fqdn}:{port} > /dev/null 2>&1; then
								echo "GCS is ready."
								break
							fi
							echo "$SECONDS seconds elapsed: Waiting for GCS to be ready."
						else
							if ray health-check --address {fqdn}:{port}; then
								echo "GCS is ready. Any error messages above can be safely ignored."
								break
							fi
							echo "$SECONDS seconds elapsed: Still waiting for GCS to be ready. For troubleshooting, refer to the FAQ at https://docs.ray.io/en/master/cluster/kubernetes/troubleshooting.html."
						fi
						sleep 5
					done
				"""
    init: Obj = {
        "name": "wait-gcs-ready",
        "image": ray["image"],
        "command": ["/bin/bash", "-c", "--"],
        "args": [script],
        "env": [*copy.deepcopy(ray.get("env") or []), _env("FQ_RAY_IP", fqdn), _env("RAY_IP", fqdn.split(".")[0])],
        "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}},
    }
    for key in ("imagePullPolicy", "securityContext", "volumeMounts"):
        if ray.get(key) is not None:
            init[key] = copy.deepcopy(ray[key])
    return init


def worker_pod(cluster: Mapping[str, Any], group: Mapping[str, Any]) -> Obj:
    template = copy.deepcopy(group["template"])
    pod_spec = template["spec"]
    ray = pod_spec["containers"][0]
    pod_spec.setdefault("initContainers", []).append(_wait_gcs_ready(ray, head_fqdn(cluster), head_port(cluster)))
    params = _start_params(cluster, "worker", group.get("rayStartParams") or {})
    _ray_container(pod_spec, cluster, "worker", params)
    labels = _labels(cluster, "worker", group["groupName"], template)
    prefix = f"{cluster['metadata']['name']}-{group['groupName']}-worker-"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(cluster, template, prefix, labels),
        "spec": pod_spec,
    }


def head_service(cluster: Mapping[str, Any]) -> Obj:
    name = cluster["metadata"]["name"]
    selector = {
        "ray.io/cluster": name,
        "ray.io/node-type": "head",
        "ray.io/identifier": f"{name}-head"[:63],
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    container = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p.get("name") or f"{p['containerPort']}-port": p["containerPort"] for p in container.get("ports") or []}
    if not ports:
        ports = dict(_DEFAULT_SERVICE_PORTS)
    ports.setdefault("metrics", METRICS_PORT)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": head_service_name(cluster),
            "namespace": cluster["metadata"]["namespace"],
            "labels": dict(selector),
            "ownerReferences": _metadata(cluster, {}, "", {})["ownerReferences"],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [{"name": n, "port": p, "appProtocol": "tcp"} for n, p in sorted(ports.items())],
            "type": (cluster["spec"]["headGroupSpec"].get("serviceType") or "ClusterIP"),
        },
    }


def autoscaler_rbac(cluster: Mapping[str, Any]) -> list[Obj]:
    """The ServiceAccount, Role and RoleBinding KubeRay creates for the autoscaler sidecar."""
    meta = cluster["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    account = (cluster["spec"]["headGroupSpec"]["template"].get("spec") or {}).get("serviceAccountName") or name
    labels = {
        "ray.io/cluster": name,
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    owners = _metadata(cluster, {}, "", {})["ownerReferences"]
    rbac = "rbac.authorization.k8s.io"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace, "labels": labels, "ownerReferences": owners},
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
                {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]},
                {"apiGroups": [GROUP], "resources": ["rayclusters"], "verbs": ["get", "patch"]},
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]


_FLAG = re.compile(r"--([a-z-]+)(?:=(\S+))?")


def start_flags(command: str) -> dict[str, str]:
    """``{"num-cpus": "4", "block": ""}`` from a ``ray start`` command line."""
    return {m.group(1): m.group(2) or "" for m in _FLAG.finditer(command)}
