"""Every Kubernetes file in helm-values/ is valid against its official schema and safe by default."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.k8s_api import MockKubeServer, PodScript
from tests.k8s_api.schemas import ObjectInvalid, kuberay_resources, schemas_dir, validate_object
from tests.unit.k8s import raycluster_chart
from tests.unit.k8s.manifests import (
    HELM_VALUES,
    deep_merge,
    load_all,
    load_one,
    pod_specs,
    project_version,
    requirement_pin,
    security_violations,
)

SECRET_KEYS = {"fernetKey", "jwtSecret", "apiSecretKey", "webserverSecretKey", "password", "pass", "token"}


def raycluster_crd() -> Any:
    return next(c for c in kuberay_resources() if c.kind == "RayCluster" and c.version == "v1")


# --- Airflow chart values ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart_schema() -> dict[str, Any]:
    return json.loads((schemas_dir() / "airflow-chart" / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def airflow_values() -> dict[str, Any]:
    return load_one("airflow-values.yaml")


@pytest.fixture(scope="module")
def merged_airflow_values(airflow_values: dict[str, Any]) -> dict[str, Any]:
    defaults = yaml.safe_load((schemas_dir() / "airflow-chart" / "values.yaml").read_text())
    return deep_merge(defaults, airflow_values)


def _chart_errors(schema: dict[str, Any], values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


def _unknown_keys(schema: dict[str, Any], node: Any, root: dict[str, Any], path: str = "") -> list[str]:
    """Keys the chart's schema does not declare: a typo the chart would silently ignore."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if not isinstance(node, dict) or schema.get("type") not in ("object", ["object", "null"], None):
        return []
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    out = []
    for key, value in node.items():
        if props is not None and key in props:
            out += _unknown_keys(props[key], value, root, f"{path}.{key}".lstrip("."))
        elif isinstance(extra, dict):
            out += _unknown_keys(extra, value, root, f"{path}.{key}".lstrip("."))
        elif props is not None and extra is not True:
            out.append(f"{path}.{key}".lstrip("."))
    return out


def test_airflow_values_match_the_chart_schema(
    chart_schema: dict[str, Any], airflow_values: dict[str, Any], merged_airflow_values: dict[str, Any]
) -> None:
    assert _chart_errors(chart_schema, merged_airflow_values) == []
    assert _unknown_keys(chart_schema, airflow_values, chart_schema) == []
    # The validation has teeth: an unknown executor and a misspelt key are caught.
    assert _chart_errors(chart_schema, deep_merge(merged_airflow_values, {"executor": "Kubernetes"}))
    typo = deep_merge(airflow_values, {"workers": {"serviceAcount": {"name": "x"}}})
    assert _unknown_keys(chart_schema, typo, chart_schema) == ["workers.serviceAcount"]


def test_airflow_values_pin_the_image_and_version(airflow_values: dict[str, Any]) -> None:
    assert airflow_values["airflowVersion"] == requirement_pin("apache-airflow")
    image = airflow_values["images"]["airflow"]
    assert (image["repository"], image["tag"]) == (
        airflow_values["defaultAirflowRepository"],
        airflow_values["defaultAirflowTag"],
    )
    assert image["tag"] == project_version()


def test_airflow_values_select_the_kubernetes_backend(airflow_values: dict[str, Any]) -> None:
    env = {e["name"]: e["value"] for e in airflow_values["env"]}
    assert env["AIRFLOW__MLK8S__BACKEND"] == "kubernetes" == airflow_values["config"]["mlk8s"]["backend"]
    assert env["AIRFLOW__MLK8S__NAMESPACE"] == airflow_values["config"]["mlk8s"]["namespace"] == "mlk8s"
    connection = json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    assert connection["extra"] == {"in_cluster": True, "namespace": "mlk8s"}


def test_airflow_values_hold_no_secrets(airflow_values: dict[str, Any]) -> None:
    def walk(node: Any, path: str) -> list[str]:
        found = []
        if isinstance(node, dict):
            for key, value in node.items():
                if key in SECRET_KEYS and value not in (None, ""):
                    found.append(f"{path}.{key}")
                found += walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                found += walk(item, f"{path}[{i}]")
        return found

    assert walk(airflow_values, "") == []
    assert airflow_values["postgresql"]["enabled"] is False
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert airflow_values[key]
    assert airflow_values["data"]["metadataSecretName"]
    ray_token = next(s for s in airflow_values["secret"] if s["envName"] == "RAY_AUTH_TOKEN")
    assert (ray_token["secretName"], ray_token["secretKey"]) == ("mlk8s-ray-auth", "auth_token")
    assert airflow_values["apiServer"]["defaultUser"]["enabled"] is False


@pytest.mark.parametrize("component", ["scheduler", "workers", "triggerer", "dagProcessor", "apiServer"])
def test_airflow_components_run_non_root_on_the_stateless_pool(
    merged_airflow_values: dict[str, Any], component: str
) -> None:
    values = merged_airflow_values
    contexts = values[component].get("securityContexts") or {}
    pod = contexts.get("pod") or values["securityContexts"]["pod"]
    container = contexts.get("container") or values["securityContexts"]["container"]
    spec = {"securityContext": pod, "containers": [{"name": component, "securityContext": container}]}
    assert security_violations(component, spec) == []
    assert (values[component].get("nodeSelector") or values["nodeSelector"]) == {"mlk8s.io/pool": "stateless"}


# --- RayCluster ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    return load_one("raycluster.yaml")


def test_raycluster_manifest_is_what_the_chart_renders_from_the_values(raycluster: dict[str, Any]) -> None:
    rendered = raycluster_chart.render(raycluster_chart.merged_values())
    assert rendered == raycluster, "regenerate: python -m tests.unit.k8s.raycluster_chart > helm-values/raycluster.yaml"


def test_raycluster_values_use_only_keys_the_chart_reads() -> None:
    values = load_one("raycluster-values.yaml")
    defaults = yaml.safe_load((schemas_dir() / "kuberay" / "ray-cluster-chart-values.yaml").read_text())
    # Keys the chart's template reads that its defaults file only mentions in comments.
    templated_only = {
        "rayVersion",
        "enableInTreeAutoscaling",
        "autoscalerOptions",
        "image",
        "disabled",
        "priorityClassName",
    }
    assert set(values) <= set(defaults)
    for section in ("head", "worker"):
        assert set(values[section]) <= set(defaults[section]) | templated_only, section
    for group in values["additionalWorkerGroups"].values():
        assert set(group) <= set(defaults["additionalWorkerGroups"]["smallGroup"]) | templated_only


def test_raycluster_is_valid_against_the_crd(raycluster: dict[str, Any]) -> None:
    validate_object(raycluster, raycluster_crd())
    broken = copy.deepcopy(raycluster)
    broken["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resoures"] = {}
    with pytest.raises(ObjectInvalid, match=r"workerGroupSpecs\[1\]\.template\.spec\.containers\[0\]\.resoures"):
        validate_object(broken, raycluster_crd())


def test_raycluster_versions_and_image(raycluster: dict[str, Any]) -> None:
    assert raycluster["spec"]["rayVersion"] == requirement_pin("ray")
    head = raycluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == f"ghcr.io/mlk8s/mlk8s:{project_version()}"


def test_raycluster_placement_and_gpus(raycluster: dict[str, Any]) -> None:
    spec = raycluster["spec"]
    head = spec["headGroupSpec"]["template"]
    assert head["spec"]["nodeSelector"] == {"mlk8s.io/pool": "stateful"}
    assert head["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert head["metadata"]["labels"]["mlk8s.io/component"] == "ray-head"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert group["template"]["spec"]["nodeSelector"]["mlk8s.io/pool"] == "stateless"
        assert group["template"]["metadata"]["labels"]["mlk8s.io/component"] == "ray-worker"
        assert group["minReplicas"] == 0 <= group["replicas"] <= group["maxReplicas"]
    gpu = groups["gpu"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert gpu["containers"][0]["image"].endswith("-cuda")
    cpu = groups["cpu"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]


def test_raycluster_turns_token_auth_on_everywhere(raycluster: dict[str, Any]) -> None:
    token_from_secret = {"secretKeyRef": {"name": "mlk8s-ray-auth", "key": "auth_token"}}
    env_lists = [c.get("env") or [] for _, spec in pod_specs(raycluster) for c in spec["containers"]]
    env_lists.append(raycluster["spec"]["autoscalerOptions"]["env"])
    for env in env_lists:
        by_name = {e["name"]: e for e in env}
        assert by_name["RAY_AUTH_MODE"]["value"] == "token"
        assert by_name["RAY_AUTH_TOKEN"] == {"name": "RAY_AUTH_TOKEN", "valueFrom": token_from_secret}


def test_raycluster_pods_are_locked_down(raycluster: dict[str, Any]) -> None:
    problems = [p for where, spec in pod_specs(raycluster) for p in security_violations(where, spec)]
    assert problems == []
    autoscaler = raycluster["spec"]["autoscalerOptions"]["securityContext"]
    assert autoscaler["allowPrivilegeEscalation"] is False and autoscaler["runAsNonRoot"] is True
    for name, spec in pod_specs(raycluster):
        if name != "headGroupSpec":  # the head's ServiceAccount is KubeRay's, for the autoscaler
            assert spec["serviceAccountName"] == "mlk8s-pod"


def test_raycluster_in_both_actuator_modes_is_valid() -> None:
    """ "own" mode is the same values with in-tree autoscaling off: no autoscaler options are rendered."""
    values = raycluster_chart.merged_values()
    values["head"]["enableInTreeAutoscaling"] = False
    own = raycluster_chart.render(values)
    assert "enableInTreeAutoscaling" not in own["spec"]
    validate_object(own, raycluster_crd())


def _pods_from_templates(raycluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pods KubeRay would create, with the labels it adds, reduced to what scheduling needs."""
    name = raycluster["metadata"]["name"]
    out = {}
    groups = [("headgroup", "head", raycluster["spec"]["headGroupSpec"])] + [
        (g["groupName"], "worker", g) for g in raycluster["spec"]["workerGroupSpecs"]
    ]
    for group, node_type, spec in groups:
        template = copy.deepcopy(spec["template"])
        labels = {**template["metadata"]["labels"], "ray.io/cluster": name, "ray.io/node-type": node_type}
        labels["ray.io/group"] = group
        out[group] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-{group}-x1", "labels": labels},
            "spec": {**template["spec"], "restartPolicy": "Never"},
        }
    return out


def test_raycluster_pods_land_on_their_pools_and_pdbs_hold(raycluster: dict[str, Any]) -> None:
    pods = _pods_from_templates(raycluster)
    with MockKubeServer() as server:
        api = server.api_client()
        core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
        for pdb in load_all("pdb-ray-head.yaml") + load_all("pdb-ray-workers.yaml"):
            policy.create_namespaced_pod_disruption_budget("mlk8s", pdb)
        for pod in pods.values():
            server.script_pod(pod["metadata"]["name"], PodScript(logs=["x"] * 1000, line_interval_s=0.05))
            core.create_namespaced_pod("mlk8s", pod)  # a valid core/v1 Pod, or this raises 422
        deadline = time.time() + 5
        while time.time() < deadline and any(
            core.read_namespaced_pod(p["metadata"]["name"], "mlk8s").status.phase != "Running" for p in pods.values()
        ):
            time.sleep(0.02)
        nodes = {g: core.read_namespaced_pod(p["metadata"]["name"], "mlk8s").spec.node_name for g, p in pods.items()}
        assert nodes == {"headgroup": "stateful-node-1", "cpu": "stateless-node-1", "gpu": "stateless-gpu-node-1"}
        for pod in pods.values():
            eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod["metadata"]["name"]}}
            with pytest.raises(ApiException) as info:
                core.create_namespaced_pod_eviction(pod["metadata"]["name"], "mlk8s", eviction)
            assert info.value.status == 429, pod["metadata"]["name"]


# --- PodDisruptionBudgets ----------------------------------------------------------------------------------------


def test_pdbs_are_valid_and_track_the_raycluster(raycluster: dict[str, Any]) -> None:
    head = load_one("pdb-ray-head.yaml")
    workers = load_all("pdb-ray-workers.yaml")
    for pdb in [head, *workers]:
        validate_object(pdb)
        assert pdb["metadata"]["namespace"] == raycluster["metadata"]["namespace"]
        assert pdb["spec"]["selector"]["matchLabels"]["ray.io/cluster"] == raycluster["metadata"]["name"]
        assert "maxUnavailable" not in pdb["spec"]  # unsupported for pods owned by a RayCluster
    assert head["spec"]["minAvailable"] == 1
    assert head["spec"]["selector"]["matchLabels"]["ray.io/node-type"] == "head"
    by_group = {p["spec"]["selector"]["matchLabels"]["ray.io/group"]: p for p in workers}
    groups = {g["groupName"]: g for g in raycluster["spec"]["workerGroupSpecs"]}
    assert set(by_group) == set(groups)
    for name, pdb in by_group.items():
        assert pdb["spec"]["minAvailable"] == groups[name]["maxReplicas"], name
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


# --- PriorityClasses ------------------------------------------------------------------------------------------


def test_priorityclasses_are_valid_and_used_by_the_raycluster(raycluster: dict[str, Any]) -> None:
    classes = {d["metadata"]["name"]: d for d in load_all("priorityclasses.yaml")}
    for pc in classes.values():
        validate_object(pc)
        assert pc["globalDefault"] is False and "namespace" not in pc["metadata"]
    assert classes["mlk8s-critical"]["value"] > classes["mlk8s-preemptible"]["value"]
    assert classes["mlk8s-preemptible"]["preemptionPolicy"] == "Never"
    used = {name: spec.get("priorityClassName") for name, spec in pod_specs(raycluster)}
    assert used["headGroupSpec"] == "mlk8s-critical"
    assert {v for k, v in used.items() if k != "headGroupSpec"} == {"mlk8s-preemptible"}


# --- RBAC -----------------------------------------------------------------------------------------------------------


def test_rbac_is_valid_and_namespaced(airflow_values: dict[str, Any]) -> None:
    docs = load_all("rbac.yaml")
    for doc in docs:
        validate_object(doc)
        assert doc["kind"] not in ("ClusterRole", "ClusterRoleBinding")
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    for role in roles.values():
        assert role["metadata"]["namespace"] == "mlk8s"
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"wildcard in {role['metadata']['name']}.{field}"
            assert "resourceNames" not in rule or rule["resourceNames"]
    # What each Role grants is checked against the calls each component makes: tests/unit/k8s/test_rbac.py.
    bindings = {d["metadata"]["name"]: d for d in docs if d["kind"] == "RoleBinding"}
    subjects = {b["roleRef"]["name"]: b["subjects"] for b in bindings.values()}
    assert set(subjects) == set(roles)
    worker_sa = airflow_values["workers"]["serviceAccount"]["name"]
    triggerer_sa = airflow_values["triggerer"]["serviceAccount"]["name"]
    assert subjects["mlk8s-operators"] == [{"kind": "ServiceAccount", "name": worker_sa, "namespace": "airflow"}]
    assert subjects["mlk8s-triggerer"] == [{"kind": "ServiceAccount", "name": triggerer_sa, "namespace": "airflow"}]
    pod_sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert pod_sa["automountServiceAccountToken"] is False
    assert not any(s["name"] == pod_sa["metadata"]["name"] for b in bindings.values() for s in b["subjects"])


def test_every_helm_values_manifest_is_checked() -> None:
    """A new file in helm-values/ must be added to the tests above (or this list) to be validated."""
    checked = {
        "airflow-values.yaml",
        "raycluster-values.yaml",
        "raycluster.yaml",
        "pdb-ray-head.yaml",
        "pdb-ray-workers.yaml",
        "rbac.yaml",
        "priorityclasses.yaml",
    }
    present = {p.name for p in HELM_VALUES.iterdir() if p.suffix in (".yaml", ".yml")}
    assert present == checked


def test_the_checkers_have_teeth() -> None:
    """The security and RBAC checkers above flag what they should (so their passing means something)."""
    from tests.unit.k8s.manifests import rbac_allows, rbac_checks, request_to_rbac

    root = {"containers": [{"name": "c", "securityContext": {"runAsUser": 0, "privileged": True}}]}
    problems = security_violations("pod", root)
    assert any("runAsNonRoot" in p for p in problems) and any("privileged" in p for p in problems)
    assert any("allowPrivilegeEscalation" in p for p in problems) and any("capabilities" in p for p in problems)
    rules = load_all("rbac.yaml")[1]["rules"]
    assert not rbac_allows(rules, "", "secrets", "get")
    assert not rbac_allows(rules, "ray.io", "rayclusters", "delete")
    assert request_to_rbac("GET", "/api/v1/namespaces/mlk8s/pods", {"watch": "True"}) == ("", "pods", "watch")
    exec_path = "/api/v1/namespaces/mlk8s/pods/p/exec"
    assert rbac_checks("GET", exec_path, {}) == {("", "pods/exec", "get"), ("", "pods/exec", "create")}
    assert not rbac_allows(
        [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}], "", "pods/exec", "get"
    )
    assert request_to_rbac("PATCH", "/apis/ray.io/v1/namespaces/mlk8s/rayclusters/x", {}) == (
        "ray.io",
        "rayclusters",
        "patch",
    )
