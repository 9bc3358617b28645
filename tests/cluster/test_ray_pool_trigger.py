"""The Ray pool trigger on the cluster-in-a-box, with the triggerer's ServiceAccount (issue 10, scenario 3).

``RayPoolTrigger`` runs where Airflow runs it, in the triggerer, so its Kubernetes calls are made with the
triggerer's credentials and held to the triggerer's Role of helm-values/rbac.yaml. It reads the queue of pool
``ray`` from Airflow's real API app (the integration tier's fixture: task instances queued, scheduled,
running, deferred), Ray's demand from the head pod's GCS, and resizes the shipped RayCluster in the mode it
is shipped for (``kuberay-cooperate``: KubeRay's in-tree autoscaler on, we move ``minReplicas``): a worker pod
is created and really joins Ray. When the queue drains, the trigger lowers ``minReplicas`` again and deletes
no pod itself: which idle worker goes, and when, is KubeRay's autoscaler's choice (``idleTimeoutSeconds``
300 as shipped), so a busy worker is never ours to remove in this mode.

What it proves: the triggerer's Role suffices for the loop (no new RBAC denial), the queue is read over HTTP
from Airflow's API, ``minReplicas`` moves up then down, and the pod made for it joins Ray. What it does not:
which idle worker KubeRay's autoscaler removes or when (tests/cluster/test_pool_shrink.py waits for that, with a
shortened idle timeout), nor a real ``airflow triggerer`` process (the trigger runs in this test's event loop).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mlk8s.ray_auth import AUTH_TOKEN_ENV
from tests.cluster.box import ClusterInABox, wait_until
from tests.integration.test_ray_pool_airflow_api import _set_state, airflow_api  # noqa: F401 (a fixture)

GROUP = {"name": "cpu", "min_workers": 0, "max_workers": 1, "cpus_per_worker": 4}


def _min_replicas(cluster: ClusterInABox) -> int:
    obj = cluster.server.get("rayclusters", cluster.ray_cluster, cluster.namespace, "ray.io")
    assert obj is not None
    group = next(g for g in obj["spec"]["workerGroupSpecs"] if g["groupName"] == GROUP["name"])
    return int(group.get("minReplicas") or 0)


def _event(settings: dict[str, Any], state: dict[str, Any] | None, seq: int, cycles: int) -> dict[str, Any]:
    from mlk8s_airflow.triggers.ray_pool import RayPoolTrigger

    trigger = RayPoolTrigger(
        settings=settings, run_key="cluster/ray_pool", state=state, seq=seq, cycles_per_event=cycles
    )

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger yielded no event")

    # In a thread of its own, as the triggerer runs triggers in its own loop: this thread may have a loop
    # running already (Playwright's sync API keeps one while a browser test module's fixtures are open).
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, first()).result()


def test_the_trigger_grows_the_raycluster_for_queued_tasks_with_the_triggerers_rbac(
    cluster: ClusterInABox,
    airflow_api: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlk8s_airflow.sensors.ray_pool import RayPoolSensor

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", cluster.kubernetes_connection("triggerer"))
    api = {"conn_type": "http", "host": airflow_api["base"], "login": "reader", "password": airflow_api["password"]}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_DEFAULT", json.dumps(api))
    monkeypatch.setenv(AUTH_TOKEN_ENV, cluster.ray_token)
    denied_before = {r.describe() for r in cluster.rbac_usage("triggerer").ungranted}
    settings = (
        RayPoolSensor(
            task_id="size_ray_pool",
            actuator="kuberay-cooperate",
            groups=[GROUP],
            ray_address=cluster.ray_address,
            raycluster_name=cluster.ray_cluster,
            namespace=cluster.namespace,
            policy={"scale_down_window_s": 1, "cpus_per_task": 1},
            interval_s=1,
        )
        .settings()
        .to_json()
    )
    assert _min_replicas(cluster) == 0
    try:
        grown = _event(settings, None, 0, 2)
        assert not grown["errors"] and not grown["error"], grown
        assert grown["points"][0]["queued"] > 0 and grown["points"][-1]["target"] == 1, grown["points"]
        assert _min_replicas(cluster) == 1
        worker = wait_until(lambda: next(iter(cluster.ray_pods("worker", "cpu")), None), 120, cluster.describe)
        nodes = cluster.wait_for_ray_nodes(2)
        ip = wait_until(
            lambda: (
                (p := cluster.server.get("pods", worker["metadata"]["name"], cluster.namespace))
                and p["status"].get("podIP")
            ),
            60,
            cluster.describe,
        )
        assert ip in {n["ip"] for n in nodes if not n["head"]}  # the new pod is a Ray node

        # Every task of pool "ray" ends: the queue drains, the trigger gives the group back to the autoscaler.
        for run_id, task_id in [("r1", f"prep_{i}") for i in range(5)] + [("r2", f"prep_{i}") for i in range(3)]:
            _set_state(airflow_api, run_id, task_id, "success")
        shrunk = _event(settings, grown["state"], grown["seq"], 4)
        assert not shrunk["errors"] and not shrunk["error"], shrunk
        assert shrunk["points"][-1]["target"] == 0, shrunk["points"]
        assert _min_replicas(cluster) == 0
        assert [p["metadata"]["name"] for p in cluster.ray_pods("worker", "cpu")] == [worker["metadata"]["name"]]
    finally:
        cluster.scale_worker_group("cpu", 0, tuple(p["metadata"]["name"] for p in cluster.ray_pods("worker", "cpu")))
        group = cluster.server.get("rayclusters", cluster.ray_cluster, cluster.namespace, "ray.io")
        if group is not None and _min_replicas(cluster):
            rt = cluster.server.resource_type("rayclusters", "ray.io")
            specs = [{**g, "minReplicas": 0} for g in group["spec"]["workerGroupSpecs"]]
            cluster.server.patch(
                rt, cluster.namespace, cluster.ray_cluster, {"spec": {"workerGroupSpecs": specs}},
                "application/merge-patch+json", None,
            )  # fmt: skip
        wait_until(lambda: not cluster.ray_pods("worker", "cpu"), 120, cluster.describe)
    usage = cluster.rbac_usage("triggerer")
    calls = {(r.verb, r.resource) for r in cluster.server.audit if r.user == str(cluster.identity("triggerer").name)}
    assert calls, "the trigger made no Kubernetes call as the triggerer"
    assert {r.describe() for r in usage.ungranted} <= denied_before, usage.explain()
