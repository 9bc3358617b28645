"""The PodDisruptionBudget that keeps voluntary evictions (node drains, autoscaler scale-down) away from a
task's pods for the whole task: across relaunches, deferrals and retries of one run.

One budget per task run (its name and selector leave the try number out), created before the first pod and
deleted when the task ends, whichever process ends it: the worker (sync mode, or the resumed deferrable
task) or the triggerer (a user killing the deferred task: ``PodTaskTrigger.on_kill``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mlk8s_airflow.names import COMPONENT_LABEL


def budget_name(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """A DNS-1123 name, the same for every try and relaunch of one task run."""
    digest = hashlib.sha256(f"{dag_id}/{task_id}/{run_id}/{map_index}".encode()).hexdigest()
    return f"mlk8s-train-{digest[:16]}"


def budget_body(name: str, namespace: str, selector: Mapping[str, str], component: str) -> dict[str, Any]:
    """A budget that allows no voluntary eviction of the pods ``selector`` matches.

    Bare pods (no controller with a scale subresource) only support an integer ``minAvailable``; 1 blocks
    every voluntary eviction of the task's one pod.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace, "labels": {COMPONENT_LABEL: component}},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(selector)}},
    }


def create_budget(api_client: Any, body: Mapping[str, Any]) -> None:
    """Create the budget; one already there (an earlier try or a relaunch of this run) is kept."""
    from kubernetes.client import PolicyV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        PolicyV1Api(api_client).create_namespaced_pod_disruption_budget(body["metadata"]["namespace"], body)
    except ApiException as exc:
        if exc.status != 409:
            raise


def delete_budget(api_client: Any, name: str, namespace: str) -> bool:
    """Delete the budget; False if it was already gone."""
    from kubernetes.client import PolicyV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        PolicyV1Api(api_client).delete_namespaced_pod_disruption_budget(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return False
    return True


async def delete_budget_async(api_client: Any, name: str, namespace: str) -> bool:
    """``delete_budget`` for the triggerer's asyncio client (kubernetes_asyncio)."""
    from kubernetes_asyncio import client as async_client

    try:
        await async_client.PolicyV1Api(api_client).delete_namespaced_pod_disruption_budget(name, namespace)
    except async_client.ApiException as exc:
        if exc.status != 404:
            raise
        return False
    return True
