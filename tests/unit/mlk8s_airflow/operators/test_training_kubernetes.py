"""TrainingOperator on the kubernetes backend, deferrable (its default): the PodDisruptionBudget protects the
task's pods from the first launch to the end of the task, through relaunches and deferrals, and goes away
when the task ends, including when a user kills it while it is deferred (issue 10, defect 4)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from mlk8s_airflow.operators.training import TrainingOperator
from mlk8s_airflow.triggers.pod import PodTaskTrigger
from tests.k8s_api import Disruption, MockKubeServer, PodScript
from tests.unit.mlk8s_airflow.operators.deferral import defer, first_event, rebuilt, resume
from tests.unit.mlk8s_airflow.operators.test_pod_kubernetes import IMAGE, NS, context_for

pytestmark = pytest.mark.slow

RESULT = {"model_uri": "s3://m/model.safetensors", "checkpoint_uri": "s3://c", "steps": 3}


def training_op(kubeconfig: Path, **kwargs: Any) -> TrainingOperator:
    kwargs.setdefault("namespace", NS)
    return TrainingOperator(
        task_id="train",
        image=IMAGE,
        config_file=str(kubeconfig),
        in_cluster=False,
        backend="kubernetes",
        startup_timeout_seconds=20,
        startup_check_interval_seconds=1,
        poll_interval=0.2,
        checkpoint_uri="s3://bucket/ckpt",
        output_uri="s3://bucket/model",
        **kwargs,
    )


def pdbs(server: MockKubeServer) -> list[dict]:
    return server.objects("poddisruptionbudgets", NS, group="policy")


def test_training_defers_by_default(k8s_kubeconfig: Path) -> None:
    assert training_op(k8s_kubeconfig).deferrable is True


@pytest.mark.parametrize(
    "disruption",
    [Disruption.preempted(), Disruption.evicted_by_api(vanish=True)],
    ids=["preempted", "evicted-and-deleted"],
)
def test_relaunch_after_a_deferral_keeps_the_pdb_for_the_relaunched_pod(
    k8s_server: MockKubeServer, k8s_kubeconfig: Path, disruption: Disruption
) -> None:
    first = k8s_server.script_pod("train", logs=["step 1"], disruption=disruption)
    second = k8s_server.script_pod("train", PodScript(logs=["resumed", "done"], xcom=RESULT))
    ctx = context_for("train")
    deferred = defer(lambda: training_op(k8s_kubeconfig).execute(ctx))
    assert isinstance(deferred.trigger, PodTaskTrigger)
    assert len(pdbs(k8s_server)) == 1
    # The first pod is disrupted; the resumed task relaunches it and defers again: the PDB must still be there.
    with pytest.raises(TaskDeferred) as again:
        resume(lambda: training_op(k8s_kubeconfig), ctx, deferred)
    assert first.played_on is not None
    assert [p["metadata"]["name"] for p in pdbs(k8s_server)] == [deferred.trigger.pdb_name]
    assert ctx["task_state_store"]["mlk8s_disruptions"] == 1
    result = resume(lambda: training_op(k8s_kubeconfig), ctx, again.value)
    assert second.played_on is not None
    assert result["model_uri"] == RESULT["model_uri"] and result["relaunches"] == 1
    assert pdbs(k8s_server) == []  # the task ended: the budget is gone


def test_a_failed_pod_after_a_deferral_removes_the_pdb(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    k8s_server.script_pod("train", logs=["Traceback: boom"], exit_code=1)
    ctx = context_for("train")
    deferred = defer(lambda: training_op(k8s_kubeconfig).execute(ctx))
    with pytest.raises(Exception, match="returned a failure|Container failed|pod failed"):
        resume(lambda: training_op(k8s_kubeconfig), ctx, deferred)
    assert pdbs(k8s_server) == []


def test_a_user_kill_while_deferred_deletes_the_pod_and_the_pdb(
    k8s_server: MockKubeServer, k8s_kubeconfig: Path
) -> None:
    k8s_server.script_pod("train", logs=["step 1"], keep_running=True)
    ctx = context_for("train")
    deferred = defer(lambda: training_op(k8s_kubeconfig).execute(ctx))
    pod_name = deferred.trigger.pod_name
    assert k8s_server.get("pods", pod_name, NS) is not None and len(pdbs(k8s_server)) == 1
    trigger = rebuilt(deferred.trigger)  # the triggerer's copy: the budget's name travels in the kwargs
    asyncio.run(trigger.on_kill())
    assert k8s_server.get("pods", pod_name, NS) is None
    assert pdbs(k8s_server) == []


def test_sync_mode_still_protects_and_cleans_up(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    k8s_server.script_pod("train", logs=["step 1"], disruption="preempted")
    k8s_server.script_pod("train", PodScript(logs=["done"], xcom=RESULT))
    result = training_op(k8s_kubeconfig, deferrable=False).execute(context_for("train"))
    assert result["relaunches"] == 1 and pdbs(k8s_server) == []


def test_the_trigger_event_is_what_kpo_expects(k8s_server: MockKubeServer, k8s_kubeconfig: Path) -> None:
    k8s_server.script_pod("train", PodScript(logs=["done"], xcom=RESULT))
    deferred = defer(lambda: training_op(k8s_kubeconfig).execute(context_for("train")))
    event = first_event(rebuilt(deferred.trigger))
    assert event["status"] == "success" and event["name"] == deferred.trigger.pod_name


def test_a_task_with_no_namespace_deletes_its_pdb_in_the_connections_namespace_after_a_deferral(
    k8s_server: MockKubeServer, k8s_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As nightly_retrain runs with the Helm values: no namespace= on the task, the connection names it. The task
    # resumes as a fresh operator, whose namespace is unset again: the budget must still be found and deleted
    # (it was deleted in namespace "None", forbidden, and left behind; tests/cluster/test_nightly_retrain.py).
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(k8s_kubeconfig), "namespace": NS}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(connection))
    k8s_server.script_pod("train", PodScript(logs=["done"], xcom=RESULT))
    ctx = context_for("train")
    deferred = defer(lambda: training_op(k8s_kubeconfig, namespace=None).execute(ctx))
    assert [p["metadata"]["name"] for p in pdbs(k8s_server)] == [deferred.trigger.pdb_name]
    result = resume(lambda: training_op(k8s_kubeconfig, namespace=None), ctx, deferred)
    assert result["model_uri"] == RESULT["model_uri"]
    assert pdbs(k8s_server) == []
