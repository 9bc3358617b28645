"""nightly_retrain end to end on the cluster-in-a-box with ``backend=kubernetes`` (issue 10, scenario 1).

The DAG file as shipped runs through ``dag.test()`` (real Airflow 3 in process, SQLite metadata DB) with the
deployment's settings of helm-values/airflow-values.yaml: ``[mlk8s] backend = kubernetes`` (env
``AIRFLOW__MLK8S__BACKEND``), the ``ray_default`` connection exactly as the values define it (the head
Service's name, which pods resolve), ``RAY_AUTH_TOKEN`` from the Secret, and the worker's ServiceAccount for
``kubernetes_default``. Every pod task (extract_documents, preprocess, train, evaluate, publish) is a real
pod in its own network namespace, and the data moves only through the shared storage (``file://`` URIs).

The preprocess pod's driver joins the pod-made Ray pool as a zero-resource node (include/mlk8s/ray_driver.py)
with the token the kubelet resolved from Secret ``mlk8s-ray-auth``. The pool starts with a head of 0 CPUs and
no workers, so the driver's work can only run once KubeRay's real autoscaler sidecar (cooperate mode, as
shipped) sees Ray's pending demand and raises the ``cpu`` group's ``replicas``: the test checks that the
autoscaler's own ServiceAccount made that patch, nobody else.

What it does not prove: the deferrable tasks' triggers run inline in ``dag.test()``, so their calls are made
with the worker's credentials, not the triggerer's (tests/cluster/test_ray_pool_trigger.py covers a trigger
with the triggerer's Role); the task's retries are set to 0 here so a failure shows at once rather than after
the DAG's 5-minute retry delay (a successful run spends none either way); the autoscaler's own scale-down
after ``idleTimeoutSeconds`` (300 s) is not waited for: the test scales the group back itself at the end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlk8s.ray_auth import AUTH_TOKEN_ENV
from mlk8s_airflow.disruption_budget import budget_name
from mlk8s_airflow.names import COMPONENT_LABEL
from tests.cluster.box import ClusterInABox, wait_until

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = 200
EPOCHS = 3
POD_TASKS = ("extract_documents", "preprocess", "train", "evaluate", "publish")
ALL_TASKS = ("check_params", *POD_TASKS, "not_worse", "live_model")


def _shipped_env(name: str) -> str:
    """An environment variable the Airflow chart's values give every component."""
    values = yaml.safe_load((REPO / "helm-values" / "airflow-values.yaml").read_text())
    return str(next(e["value"] for e in values["env"] if e["name"] == name))


class _PodWatch:
    """Records every pod KPO starts for this DAG while it lives (KPO deletes them when they end): its task,
    IP, node and last log lines; and the ``cpu`` worker group's largest ``replicas``."""

    def __init__(self, cluster: ClusterInABox) -> None:
        self.cluster = cluster
        self.pods: dict[str, dict[str, Any]] = {}
        self.max_cpu_replicas = 0
        self.ray_node_ips: set[str] = set()
        self.budgets: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception:  # a pod deleted between two reads: the next poll sees the new state
                pass
            self._stop.wait(0.5)

    def _poll(self) -> None:
        for pod in self.cluster.server.objects("pods", self.cluster.namespace):
            labels = pod["metadata"].get("labels") or {}
            if labels.get("dag_id") != "nightly_retrain":
                continue
            name = pod["metadata"]["name"]
            seen = self.pods.setdefault(name, {"task_id": labels.get("task_id"), "logs": []})
            seen.update(ip=pod["status"].get("podIP") or seen.get("ip"), node=pod["spec"].get("nodeName"))
            seen["phase"] = pod["status"].get("phase")
            try:
                seen["logs"] = self.cluster.logs(name, "base") or seen["logs"]
            except KeyError:
                pass
        for pdb in self.cluster.server.objects("poddisruptionbudgets", self.cluster.namespace, group="policy"):
            if (pdb["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == "training":
                self.budgets.add(pdb["metadata"]["name"])
        raycluster = self.cluster.server.get("rayclusters", self.cluster.ray_cluster, self.cluster.namespace, "ray.io")
        if raycluster is not None:
            group = next(g for g in raycluster["spec"]["workerGroupSpecs"] if g["groupName"] == "cpu")
            self.max_cpu_replicas = max(self.max_cpu_replicas, int(group.get("replicas") or 0))
        if any(p["task_id"] == "preprocess" and p.get("phase") == "Running" for p in self.pods.values()):
            self.ray_node_ips |= {n["ip"] for n in self.cluster.ray_nodes()}

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [p for p in self.pods.values() if p["task_id"] == task_id]

    def summary(self) -> str:
        return json.dumps({n: {**p, "logs": p["logs"][-15:]} for n, p in self.pods.items()}, indent=1, default=str)


@pytest.fixture
def dag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags" / "nightly_retrain.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["nightly_retrain"]
    for task in dag.tasks:
        task.retries = 0  # fail at once: the DAG's retry_delay is 5 minutes
    return dag


@pytest.fixture
def cpu_group_restored(cluster: ClusterInABox) -> Iterator[None]:
    """Leave the Ray pool as found: no worker of group ``cpu``, only the head alive in the GCS."""
    yield
    cluster.scale_worker_group("cpu", 0, tuple(p["metadata"]["name"] for p in cluster.ray_pods("worker", "cpu")))
    wait_until(lambda: not cluster.ray_pods("worker", "cpu"), 120, cluster.describe)
    wait_until(lambda: len(cluster.ray_nodes()) == 1, 120, cluster.describe, 2.0)


def _outcome(dr: Any) -> tuple[dict[str, str], dict[str, int], dict[str, Any]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    tis = dr.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in tis}
    tries = {ti.task_id: int(ti.try_number) for ti in tis}
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, key="return_value")
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return states, tries, xcoms


def test_nightly_retrain_runs_end_to_end_on_pods_with_the_driver_in_the_pod_made_ray_pool(
    cluster: ClusterInABox, dag: Any, cpu_group_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltalake import DeltaTable

    from mlk8s_airflow.run_keys import run_key

    ray_conn = _shipped_env("AIRFLOW_CONN_RAY_DEFAULT")
    host = json.loads(ray_conn)["host"]
    assert cluster.ray_service_address.startswith(f"{host}."), (host, cluster.ray_service_address)
    monkeypatch.setenv("AIRFLOW__MLK8S__BACKEND", _shipped_env("AIRFLOW__MLK8S__BACKEND"))
    monkeypatch.setenv("AIRFLOW__MLK8S__NAMESPACE", _shipped_env("AIRFLOW__MLK8S__NAMESPACE"))
    monkeypatch.setenv("AIRFLOW_CONN_RAY_DEFAULT", ray_conn)
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", cluster.kubernetes_connection("worker"))
    monkeypatch.setenv(AUTH_TOKEN_ENV, cluster.ray_token)  # the worker's env, from the Secret (the values)
    data_root = cluster.storage / "nightly-retrain"
    data_root.mkdir(mode=0o777)
    data_root.chmod(0o777)  # the pods run as uid 50000
    autoscaler = f"system:serviceaccount:{cluster.namespace}:{cluster.ray_cluster}"
    patches_before = sum(1 for r in cluster.server.audit if r.user == autoscaler and r.verb == "patch")
    denied_before = {r.describe() for r in cluster.rbac_usage("worker").ungranted}
    assert not cluster.ray_pods("worker", "cpu"), cluster.describe()

    conf = {"data_root": f"file://{data_root}", "documents": DOCUMENTS, "epochs": EPOCHS}
    with _PodWatch(cluster) as watch:
        dr = dag.test(logical_date=None, run_conf=conf)
    states, tries, xcoms = _outcome(dr)
    seen = f"states {states}; pods {watch.summary()}; {cluster.describe()}"
    assert str(dr.state) == "success", seen
    assert states == dict.fromkeys(ALL_TASKS, "success"), seen
    assert all(tries[t] == 1 for t in ALL_TASKS), tries

    # Every pod task ran as a pod of the cluster (its own network namespace), and each pod is gone.
    for task_id in POD_TASKS:
        assert len(watch.of(task_id)) == 1, f"{task_id}: {seen}"
    wait_until(
        lambda: not [
            p for p in cluster.server.objects("pods", cluster.namespace)
            if (p["metadata"].get("labels") or {}).get("dag_id") == "nightly_retrain"
        ],
        120,
        lambda: f"the DAG's pods to be deleted (on_finish_action=delete_pod); {cluster.describe()}",
    )  # fmt: skip

    # The driver joined the pod-made pool from its own network namespace, as a zero-resource node.
    head_ip = cluster.head_pod()["status"]["podIP"]
    (driver,) = watch.of("preprocess")
    assert driver["ip"] and driver["ip"] != head_ip, watch.summary()
    assert driver["ip"] in watch.ray_node_ips, (driver["ip"], watch.ray_node_ips)
    logs = "\n".join(driver["logs"])
    assert f"connecting to ray pool {host}:6379 (token auth on)" in logs, logs[-3000:]
    assert "as zero-resource node" in logs, logs[-3000:]
    assert "a raylet of the pool runs on this host" not in logs, logs[-3000:]
    # KubeRay's autoscaler sidecar grew the cpu group for the driver's demand (nobody else scaled it).
    autoscaler_patches = [r for r in cluster.server.audit if r.user == autoscaler and r.verb == "patch"]
    assert watch.max_cpu_replicas >= 1, f"the cpu group never grew; {seen}"
    assert len(autoscaler_patches) > patches_before and all(r.allowed for r in autoscaler_patches), [
        r.describe() for r in autoscaler_patches
    ]

    # This run's partition of the features table: every extracted row but the empty ones the pipeline drops.
    committed = xcoms["preprocess"]
    key = run_key(dr.run_id)
    assert committed["input_rows"] == DOCUMENTS, committed
    assert committed["output_rows"] == DOCUMENTS - committed["filtered_rows"] > 0, committed
    assert committed["filtered_rows"] > 0, committed  # the samples hold empty documents; the pipeline drops them
    table = DeltaTable(str(data_root / "features"))
    assert table.metadata().partition_columns == ["run_key"]
    mine = table.to_pyarrow_table(filters=[("run_key", "=", key)])
    assert mine.num_rows == committed["output_rows"], (mine.num_rows, committed)
    assert "embedding" in mine.column_names, mine.column_names
    assert all(len(v) > 0 for v in mine.column("embedding").to_pylist()), "an empty embedding"
    assert table.version() == committed["delta_version"], (table.version(), committed)
    train = xcoms["train"]
    assert train["data"]["partition"] == {"run_key": key} and train["data"]["rows"] == mine.num_rows, train
    assert train["data"]["version"] == committed["delta_version"], train

    # The candidate was evaluated, found not worse (nothing was live), published; its weights are in storage.
    registry = data_root / "models" / "document_classifier"
    assert xcoms["evaluate"]["decision"] == "publish", xcoms["evaluate"]
    live = json.loads((registry / "published.json").read_text())
    assert live["run_key"] == key, live
    assert xcoms["live_model"]["candidate_published"] is True, xcoms["live_model"]
    assert xcoms["live_model"]["live"]["weights_sha256"] == live["weights_sha256"], xcoms["live_model"]
    model_dir = Path(str(live["model_dir"]).removeprefix("file://"))
    assert model_dir == registry / "candidates" / key, live
    assert (model_dir / "model.safetensors").stat().st_size > 0, sorted(p.name for p in model_dir.iterdir())

    # The training pod's PodDisruptionBudget held while it ran (a deferred task), and went with the task.
    budget = budget_name(dr.dag_id, "train", dr.run_id, -1)
    assert watch.budgets == {budget}, (watch.budgets, budget)
    assert cluster.server.get("poddisruptionbudgets", budget, cluster.namespace, "policy") is None, budget

    usage = cluster.rbac_usage("worker")
    assert {r.describe() for r in usage.ungranted} <= denied_before, usage.explain()  # all it did, its Role grants
