"""The training pod on the cluster-in-a-box, as the worker's ServiceAccount runs it (issue 10, scenario 2).

``TrainingOperator`` with ``backend=kubernetes`` launches a real ``python -m mlk8s.training`` pod on the
stateful node. Its PodDisruptionBudget (created by the operator, allowed by the worker's Role) makes the
Eviction API refuse a voluntary eviction (429) while the task runs; the scheduler's preemption (which PDBs do
not stop) then takes the pod away; the operator relaunches it in the same task try (no Airflow retry spent),
it resumes from the checkpoint in shared storage, and the final model is bit-identical to an uninterrupted
run of the same command here.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlk8s_airflow.disruption_budget import budget_name
from mlk8s_airflow.names import COMPONENT_LABEL
from tests.cluster.box import ClusterInABox, wait_until

IMAGE = "ghcr.io/mlk8s/mlk8s:0.1.0"
EPOCHS = 6
EVERY = 20


class _TaskInstance:
    """What KPO and our operator read of a task instance (the cluster tier runs no metadata database)."""

    dag_id = "nightly_retrain"
    task_id = "train"
    map_index = -1
    try_number = 1
    run_id = "manual__2026-12-01T00:00:00+00:00"

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def _training_pods(cluster: ClusterInABox) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.server.objects("pods", cluster.namespace)
        if (p["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == "training"
        and not p["metadata"].get("deletionTimestamp")
    ]


def _reference_model(tmp_path: Path) -> bytes:
    """The same trainer, uninterrupted, in this process's environment."""
    out = tmp_path / "reference"
    args = [
        "--checkpoint-uri", f"file://{out}/checkpoints",
        "--output-uri", f"file://{out}/model",
        "--epochs", str(EPOCHS), "--seed", "0", "--checkpoint-every-steps", str(EVERY), "--keep-last", "3",
        "--termination-grace-seconds", "30",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "mlk8s.training", *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return (out / "model" / "model.safetensors").read_bytes()


def test_the_training_pod_is_refused_eviction_by_its_pdb_then_preempted_and_resumes_with_no_retry(
    cluster: ClusterInABox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlk8s_airflow.operators.training import TrainingOperator

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", cluster.kubernetes_connection("worker"))
    run_dir = cluster.storage / "training-eviction"
    run_dir.mkdir(mode=0o777)
    run_dir.chmod(0o777)
    op = TrainingOperator(
        task_id="train",
        backend="kubernetes",
        namespace=cluster.namespace,
        image=IMAGE,
        checkpoint_uri=f"file://{run_dir}/checkpoints",
        output_uri=f"file://{run_dir}/model",
        epochs=EPOCHS,
        seed=0,
        checkpoint_every_steps=EVERY,
        termination_grace_period=30,
        deferrable=False,
        get_logs=True,
        startup_timeout_seconds=240,
        startup_check_interval_seconds=1,  # type: ignore[arg-type]
    )
    ti = _TaskInstance()
    budget = budget_name(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
    denied_before = {r.describe() for r in cluster.rbac_usage("worker").ungranted}
    context: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "dag": None}
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = op.execute(context)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        first = wait_until(
            lambda: (
                next(
                    (
                        p
                        for p in _training_pods(cluster)
                        if any("checkpoint committed" in line for line in cluster.logs(p["metadata"]["name"], "base"))
                    ),
                    None,
                )
                or ("error" in outcome and outcome)
            ),
            300,
            lambda: f"a training pod's first checkpoint; {cluster.describe()}; {outcome}",
        )
        assert "error" not in outcome, outcome
        name = first["metadata"]["name"]
        assert first["spec"]["nodeName"] == "stateful-node-1"
        assert cluster.server.get("poddisruptionbudgets", budget, cluster.namespace, "policy") is not None
        with cluster.api_client("admin") as api:
            eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=cluster.namespace))
            with pytest.raises(ApiException) as refused:
                client.CoreV1Api(api).create_namespaced_pod_eviction(name, cluster.namespace, eviction)
        assert refused.value.status == 429, refused.value.body
        assert "disruption budget" in refused.value.body.lower()
        cluster.preempt(name)
        thread.join(600)
        assert not thread.is_alive(), f"the task did not end; {cluster.describe()}"
    finally:
        if thread.is_alive():
            op.on_kill()
            thread.join(60)
    assert "error" not in outcome, f"{outcome.get('error')!r}; {cluster.describe()}"
    result = outcome["result"]
    assert result["relaunches"] == 1 and result["resumes"] == 1, result
    assert ti.try_number == 1  # the relaunch happened inside the same try
    assert not _training_pods(cluster)  # both pods deleted (on_finish_action=delete_pod)
    assert cluster.server.get("poddisruptionbudgets", budget, cluster.namespace, "policy") is None  # gone with the task
    assert (run_dir / "model" / "model.safetensors").read_bytes() == _reference_model(tmp_path)
    usage = cluster.rbac_usage("worker")
    assert {r.describe() for r in usage.ungranted} <= denied_before, usage.explain()  # all it did, its Role grants
