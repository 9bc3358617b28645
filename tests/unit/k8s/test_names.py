"""Every name a rendered pod uses exists on the other side: in helm-values/ or in docs/deploy.md's commands
(issue 10, defect 2). The pods are the ones our DAGs build on the kubernetes backend (and the RayCluster's),
so a name changed on one side only fails here, not at run time in CreateContainerConfigError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import ApiClient

from mlk8s_airflow import names
from tests.unit.k8s.deploy_doc import parse
from tests.unit.k8s.manifests import REPO, load_all, load_one, pod_specs

pytestmark = pytest.mark.airflow

#: Labels the platform puts on nodes itself (docs/deploy.md, step 1: the NVIDIA device plugin's label).
PLATFORM_NODE_LABELS = {("nvidia.com/gpu.present", "true")}


@pytest.fixture(scope="module")
def doc() -> Any:
    return parse()


@pytest.fixture(scope="module")
def airflow_values() -> dict[str, Any]:
    return load_one("airflow-values.yaml")


@pytest.fixture(scope="module")
def values_env(airflow_values: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in airflow_values["env"]}


class _TI:
    def __init__(self, dag_id: str, task_id: str) -> None:
        self.dag_id, self.task_id, self.try_number, self.map_index = dag_id, task_id, 1, -1


def _dag_pods(values_env: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod our DAGs' pod tasks build, on the kubernetes backend, with the connections the values define."""
    from airflow.dag_processing.dagbag import DagBag

    from mlk8s_airflow.operators.pod import PodTaskOperator

    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__MLK8S__BACKEND", "kubernetes")
    for key, value in values_env.items():
        if key.startswith("AIRFLOW_CONN_"):
            mp.setenv(key, value)
    try:
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert not bag.import_errors, bag.import_errors
        for dag in bag.dags.values():
            for task in dag.tasks:
                if isinstance(task, PodTaskOperator):
                    ctx = {"ti": _TI(dag.dag_id, task.task_id), "run_id": "manual__x", "dag": SimpleNamespace()}
                    pod = task.build_pod_request_obj(ctx, dry_run=True)  # type: ignore[arg-type]
                    yield f"{dag.dag_id}.{task.task_id}", ApiClient().sanitize_for_serialization(pod)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def dag_pods(values_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    pods = dict(_dag_pods(values_env))
    assert {"nightly_retrain.extract_documents", "nightly_retrain.preprocess", "nightly_retrain.train"} <= set(pods)
    return pods


def _objects() -> dict[tuple[str, str | None, str], dict[str, Any]]:
    """(kind, namespace, name) of every object helm-values/ applies."""
    out = {}
    for file in ("rbac.yaml", "priorityclasses.yaml", "pdb-ray-head.yaml", "pdb-ray-workers.yaml", "raycluster.yaml"):
        for obj in load_all(file):
            out[(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
    return out


def _all_pods(dag_pods: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for where, pod in dag_pods.items():
        yield where, pod["metadata"]["namespace"], pod["spec"]
    rc = load_one("raycluster.yaml")
    for where, spec in pod_specs(rc):
        yield f"raycluster.{where}", rc["metadata"]["namespace"], spec


def test_pods_run_in_the_namespace_rbac_creates(dag_pods: dict[str, dict[str, Any]]) -> None:
    objects = _objects()
    for where, namespace, _ in _all_pods(dag_pods):
        assert namespace == names.POD_NAMESPACE, where
        assert ("Namespace", None, namespace) in objects, where


def test_every_service_account_a_pod_uses_exists(dag_pods: dict[str, dict[str, Any]]) -> None:
    objects = _objects()
    for where, namespace, spec in _all_pods(dag_pods):
        if where == "raycluster.headGroupSpec":
            continue  # KubeRay gives the head its own account (for the autoscaler sidecar)
        account = spec.get("serviceAccountName")
        assert ("ServiceAccount", namespace, account) in objects, f"{where}: ServiceAccount {account!r}"


def test_every_secret_a_pod_reads_is_created_by_the_docs(dag_pods: dict[str, dict[str, Any]], doc: Any) -> None:
    seen = 0
    for where, namespace, spec in _all_pods(dag_pods):
        for container in spec["containers"]:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    seen += 1
                    keys = doc.secrets.get((namespace, ref["name"]))
                    assert keys is not None, f"{where}: Secret {namespace}/{ref['name']} is never created"
                    assert ref["key"] in keys, f"{where}: Secret {ref['name']} has no key {ref['key']!r}"
    assert seen >= 3  # the preprocessing driver and the Ray head and workers read the token


def test_every_priority_class_exists(dag_pods: dict[str, dict[str, Any]]) -> None:
    objects = _objects()
    used = {spec.get("priorityClassName") for _, _, spec in _all_pods(dag_pods)}
    assert {names.PRIORITY_CRITICAL, names.PRIORITY_PREEMPTIBLE} <= used
    for name in used - {None}:
        assert ("PriorityClass", None, name) in objects, name


def test_placement_uses_the_node_labels_and_taints_the_docs_set(dag_pods: dict[str, dict[str, Any]], doc: Any) -> None:
    labels = doc.node_labels | PLATFORM_NODE_LABELS
    for where, _, spec in _all_pods(dag_pods):
        for key, value in (spec.get("nodeSelector") or {}).items():
            assert (key, value) in labels, f"{where}: nodeSelector {key}={value} matches no documented node"
        node = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        required = (node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms", [])
        preferred = [p["preference"] for p in node.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        for term in required + preferred:
            for expr in term["matchExpressions"]:
                assert any((expr["key"], v) in labels for v in expr["values"]), f"{where}: {expr}"
        for toleration in spec.get("tolerations") or []:
            assert any(
                t[0] == toleration["key"]
                and (toleration["operator"] == "Exists" or t[1] == toleration.get("value"))
                and t[2] == toleration["effect"]
                for t in doc.taints
            ), f"{where}: toleration {toleration} matches no documented taint"
    training = dag_pods["nightly_retrain.train"]["spec"]
    assert training["tolerations"] == [
        {"key": names.POOL_LABEL, "operator": "Equal", "value": names.STATEFUL, "effect": "NoSchedule"}
    ]
    assert (names.POOL_LABEL, names.STATEFUL, names.STATEFUL_TAINT_EFFECT) in doc.taints


def test_the_driver_reaches_the_raycluster_head_service(dag_pods: dict[str, dict[str, Any]]) -> None:
    rc = load_one("raycluster.yaml")
    assert rc["metadata"]["name"] == names.RAYCLUSTER_NAME
    base = next(c for c in dag_pods["nightly_retrain.preprocess"]["spec"]["containers"] if c["name"] == "base")
    env = {e["name"]: e.get("value") for e in base["env"]}
    # KubeRay names the head Service <cluster>-head-svc; the pool listens on the GCS port.
    assert env["RAY_ADDRESS"] == f"{rc['metadata']['name']}-head-svc.{rc['metadata']['namespace']}:{names.RAY_GCS_PORT}"
    assert env["RAY_AUTH_MODE"] == "token"


def test_airflow_values_read_secrets_the_docs_create(airflow_values: dict[str, Any], doc: Any) -> None:
    for entry in airflow_values["secret"]:
        keys = doc.secrets.get((names.AIRFLOW_NAMESPACE, entry["secretName"]))
        assert keys is not None and entry["secretKey"] in keys, entry
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert (names.AIRFLOW_NAMESPACE, airflow_values[key]) in doc.secrets, key
    assert (names.AIRFLOW_NAMESPACE, airflow_values["data"]["metadataSecretName"]) in doc.secrets
    secret = next(v for v in airflow_values["apiServer"]["extraVolumes"] if "secret" in v)["secret"]
    assert "passwords.json" in doc.secrets[(names.AIRFLOW_NAMESPACE, secret["secretName"])]


def test_connections_the_code_uses_are_defined_by_the_values(
    airflow_values: dict[str, Any], values_env: dict[str, str], doc: Any
) -> None:
    defined = {k.removeprefix("AIRFLOW_CONN_").lower() for k in values_env if k.startswith("AIRFLOW_CONN_")}
    defined |= {
        s["envName"].removeprefix("AIRFLOW_CONN_").lower()
        for s in airflow_values["secret"]
        if s["envName"].startswith("AIRFLOW_CONN_")
    }
    assert {names.RAY_CONN_ID, names.AIRFLOW_API_CONN_ID, names.KUBERNETES_CONN_ID} <= defined
    # The API connection logs in as the read-only user the auth manager knows, with the password it knows.
    users = dict(u.split(":")[:2] for u in airflow_values["config"]["core"]["simple_auth_manager_users"].split(","))
    assert users[names.AIRFLOW_API_USER] == "viewer"
    api_secret = next(s for s in airflow_values["secret"] if s["envName"] == "AIRFLOW_CONN_AIRFLOW_API_DEFAULT")
    keys = doc.secrets[(names.AIRFLOW_NAMESPACE, api_secret["secretName"])]
    connection = json.loads(keys[api_secret["secretKey"]].replace("$API_PASSWORD", "pw"))
    passwords = json.loads(keys["passwords.json"].replace("$API_PASSWORD", "pw").replace("$ADMIN_PASSWORD", "a"))
    assert connection["login"] == names.AIRFLOW_API_USER and passwords[names.AIRFLOW_API_USER] == "pw"
    assert set(passwords) == set(users)


def test_rbac_binds_the_service_accounts_the_chart_creates(airflow_values: dict[str, Any]) -> None:
    assert airflow_values["workers"]["serviceAccount"]["name"] == names.WORKER_SERVICE_ACCOUNT
    assert airflow_values["triggerer"]["serviceAccount"]["name"] == names.TRIGGERER_SERVICE_ACCOUNT
    subjects = {
        (s["name"], s["namespace"]) for b in load_all("rbac.yaml") if b["kind"] == "RoleBinding" for s in b["subjects"]
    }
    assert subjects == {
        (names.WORKER_SERVICE_ACCOUNT, names.AIRFLOW_NAMESPACE),
        (names.TRIGGERER_SERVICE_ACCOUNT, names.AIRFLOW_NAMESPACE),
    }


def test_every_file_the_docs_apply_is_shipped(doc: Any) -> None:
    shipped = {f"helm-values/{p.name}" for p in (REPO / "helm-values").iterdir()}
    assert set(doc.applied_files) | set(doc.values_files) <= shipped
    assert set(doc.applied_files) | set(doc.values_files) | {"helm-values/raycluster.yaml"} == shipped
