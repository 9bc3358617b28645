"""Render KubeRay's ray-cluster chart (kuberay commit feeaf72) from values, without a helm binary.

A line-by-line reading of ``helm-chart/ray-cluster/templates/raycluster-cluster.yaml`` at that commit, for the
values it templates (GCS fault tolerance options are left out: this project does not enable them). Helm's
value merging is reproduced too: maps merge deeply over the chart's defaults, lists replace them. Go
templates' ``with``/``default`` treat empty values (``0``, ``""``, ``{}``, ``[]``, ``false``) as absent, and
so does this.

Regenerate the committed manifest after changing the values:

    .venv/bin/python -m tests.unit.k8s.raycluster_chart > helm-values/raycluster.yaml
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.k8s_api.schemas import schemas_dir

CHART = "ray-cluster"
#: The version in the chart's in-tree Chart.yaml at that commit (releases stamp their own).
CHART_VERSION = "1.1.0"
RELEASE = "mlk8s-ray"
NAMESPACE = "mlk8s"
REPO = Path(__file__).resolve().parents[3]
VALUES = REPO / "helm-values" / "raycluster-values.yaml"
MANIFEST = REPO / "helm-values" / "raycluster.yaml"


def helm_merge(defaults: Any, values: Any) -> Any:
    if isinstance(defaults, dict) and isinstance(values, dict):
        out = copy.deepcopy(defaults)
        for key, value in values.items():
            out[key] = helm_merge(defaults.get(key), value) if value is not None else None
        return out
    return copy.deepcopy(values)


def merged_values(values_path: Path = VALUES) -> dict[str, Any]:
    defaults = yaml.safe_load((schemas_dir() / "kuberay" / "ray-cluster-chart-values.yaml").read_text())
    return helm_merge(defaults, yaml.safe_load(values_path.read_text()))


def _fullname(v: dict[str, Any]) -> str:
    if v.get("fullnameOverride"):
        return str(v["fullnameOverride"])[:63].rstrip("-")
    name = v.get("nameOverride") or CHART
    return RELEASE if name in RELEASE else f"{RELEASE}-{name}"[:63].rstrip("-")


def _labels() -> dict[str, str]:
    return {
        "helm.sh/chart": f"{CHART}-{CHART_VERSION}",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/managed-by": "Helm",
    }


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """``{{- with value }} key: value {{- end }}``: only non-empty values are rendered."""
    if value not in (None, "", 0, False, {}, []):
        target[key] = copy.deepcopy(value)


def _ray_start_params(group: dict[str, Any]) -> dict[str, str] | None:
    params = {**(group.get("rayStartParams") or {}), **(group.get("initArgs") or {})}
    return {k: str(v) for k, v in params.items()} or None


def _pod_template(v: dict[str, Any], group: dict[str, Any], container_name: str) -> dict[str, Any]:
    image = group.get("image") or v["image"]
    container: dict[str, Any] = {
        "name": container_name,
        "image": f"{image['repository']}:{image['tag']}",
        "imagePullPolicy": image["pullPolicy"],
    }
    _put(container, "command", group.get("command"))
    _put(container, "args", group.get("args"))
    _put(container, "env", (v.get("common", {}).get("containerEnv") or []) + (group.get("containerEnv") or []))
    for key in ("envFrom", "volumeMounts", "ports", "resources", "lifecycle", "securityContext"):
        _put(container, key, group.get(key))
    spec: dict[str, Any] = {}
    _put(spec, "initContainers", group.get("initContainers"))
    spec["containers"] = [container, *copy.deepcopy(group.get("sidecarContainers") or [])]
    _put(spec, "imagePullSecrets", v.get("imagePullSecrets"))
    for key in (
        "volumes",
        "dnsConfig",
        "nodeSelector",
        "affinity",
        "tolerations",
        "priorityClassName",
        "priority",
        "topologySpreadConstraints",
        "restartPolicy",
        "runtimeClassName",
        "serviceAccountName",
    ):
        _put(spec, key, group.get(key))
    _put(spec, "securityContext", group.get("podSecurityContext"))
    _put(spec, "resourceClaims", group.get("resourceClaims"))
    metadata: dict[str, Any] = {"labels": {**_labels(), **(group.get("labels") or {})}}
    _put(metadata, "annotations", group.get("annotations"))
    return {"metadata": metadata, "spec": spec}


def _worker_group(v: dict[str, Any], name: str, group: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "groupName": name,
        "replicas": group.get("replicas"),
        "minReplicas": group.get("minReplicas") or 0,
        "maxReplicas": group.get("maxReplicas") or 2147483647,
        "numOfHosts": group.get("numOfHosts") or 1,
    }
    _put(out, "rayStartParams", _ray_start_params(group))
    out["template"] = _pod_template(v, group, "ray-worker")
    return out


def render(values: dict[str, Any]) -> dict[str, Any]:
    v = values
    head = v["head"]
    metadata: dict[str, Any] = {"name": _fullname(v), "namespace": NAMESPACE, "labels": _labels()}
    _put(metadata, "annotations", v.get("annotations"))
    spec: dict[str, Any] = {}
    _put(spec, "rayVersion", head.get("rayVersion"))
    _put(spec, "enableInTreeAutoscaling", head.get("enableInTreeAutoscaling"))
    _put(spec, "autoscalerOptions", head.get("autoscalerOptions"))
    if (v.get("gcsFaultTolerance") or {}).get("enabled"):
        raise NotImplementedError("gcsFaultTolerance is not rendered by this reading of the chart")
    head_spec: dict[str, Any] = {}
    _put(head_spec, "headService", head.get("headService"))
    _put(head_spec, "serviceType", (v.get("service") or {}).get("type"))
    _put(head_spec, "rayStartParams", _ray_start_params(head))
    head_spec["template"] = _pod_template(v, head, "ray-head")
    spec["headGroupSpec"] = head_spec
    groups = []
    if not v["worker"].get("disabled"):
        groups.append(_worker_group(v, v["worker"]["groupName"], v["worker"]))
    for name in sorted(v.get("additionalWorkerGroups") or {}):
        group = v["additionalWorkerGroups"][name]
        if not group.get("disabled"):
            groups.append(_worker_group(v, name, group))
    spec["workerGroupSpecs"] = groups
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": metadata, "spec": spec}


HEADER = """\
# The RayCluster that helm-values/raycluster-values.yaml renders to:
#   helm template mlk8s-ray <kuberay>/helm-chart/ray-cluster -n mlk8s -f helm-values/raycluster-values.yaml
# (the chart as of kuberay commit feeaf72).
# Generated by `python -m tests.unit.k8s.raycluster_chart`; do not edit by hand (a test checks they agree).
# Apply it directly (kubectl apply -f) where Helm is not used.
"""


def main() -> None:
    sys.stdout.write(HEADER + yaml.safe_dump(render(merged_values()), sort_keys=False, width=110))


if __name__ == "__main__":
    main()
