"""The Ray pool shrinks without removing a busy worker, as shipped (issue 10, scenario 4).

The shipped objects (the RayCluster of helm-values/raycluster.yaml, the triggerer's Role of helm-values/rbac.yaml)
with the shipped split of work in ``kuberay-cooperate`` mode: ``RayPoolTrigger`` runs the whole time in a
thread of this process, as the triggerer runs it, with the triggerer's ServiceAccount, reading the queue of
pool ``ray`` from Airflow's real API app (the integration tier's fixture). It raises the ``cpu`` group's
``minReplicas`` to 2 for the queued tasks, so two worker pods start (real ``ray start``) and join Ray. A driver
pod (stand-in for a preprocessing pod: it joins the pool as a zero-resource node, token from the Secret) starts
one real Ray task, ``num_cpus=1``, ``max_retries=0``, pinned with ``NodeAffinitySchedulingStrategy(soft=False)``
to one of the two workers, which holds until the test releases it through the shared storage. Then every
queued task of the pool ends: the trigger lowers ``minReplicas`` (to the one busy worker, then to 0 once the
task has ended) and deletes nothing itself; KubeRay's real autoscaler sidecar removes idle workers through
``workersToDelete`` once they have been idle for ``idleTimeoutSeconds``.

The one deviation from the shipped values: ``autoscalerOptions.idleTimeoutSeconds`` is patched on the box's
RayCluster from 300 to ``IDLE_TIMEOUT_S`` for the test (and back after it); helm-values are not changed.

What it proves: the idle worker's pod is listed in ``workersToDelete``, deleted, and its Ray node leaves while
the task runs; the busy worker's pod and Ray node stay (never listed for deletion) for at least another idle
timeout after that and until its task ends, and the task ends with its result on the node it was pinned to (one
execution, no retry, the driver pod Succeeded); then the busy worker, now idle, is removed the same way. The
trigger's target never fell below the busy worker while the task ran; the triggerer made only calls its Role
grants (get/patch the RayCluster, list pods: no delete), and the autoscaler's calls were all allowed.
What it does not: a real ``airflow triggerer`` process (the trigger runs in this test's thread), KubeRay's own
operator (the box's stand-in acts on ``workersToDelete``), real node pressure or a cluster autoscaler.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlk8s.ray_auth import AUTH_TOKEN_ENV
from tests.cluster.box import ClusterInABox, wait_until
from tests.cluster.test_ray_pool_trigger import _event, _min_replicas
from tests.integration.test_ray_pool_airflow_api import _set_state, airflow_api  # noqa: F401 (a fixture)

IMAGE = "ghcr.io/mlk8s/mlk8s:0.1.0"
GROUP = {"name": "cpu", "min_workers": 0, "max_workers": 2, "cpus_per_worker": 4}
#: The test's idle timeout (shipped: 300 s); the autoscaler sidecar re-reads the RayCluster every update (5 s).
IDLE_TIMEOUT_S = 20
DRIVER_POD = "pool-shrink-driver"
#: Every task instance of pool "ray" the fixture left queued, scheduled, running or deferred.
POOL_TASKS = [("r1", f"prep_{i}") for i in range(5)] + [("r2", f"prep_{i}") for i in range(3)]

# The driver: joins the pool from its pod, runs one task on the named node, writes what the task saw.
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from mlk8s.ray_driver import connect

    node_id, run_dir = sys.argv[1], sys.argv[2]


    @ray.remote(num_cpus=1, max_retries=0)
    def hold(run_dir, limit_s):
        import json, os, time
        from pathlib import Path

        here = Path(run_dir)
        seen = {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "started": time.time()}
        (here / "started.tmp").write_text(json.dumps(seen))
        (here / "started.tmp").rename(here / "started.json")
        while not (here / "release").exists() and time.time() - seen["started"] < limit_s:
            time.sleep(0.5)
        total = sum(i * i for i in range(1000))
        return {**seen, "released": (here / "release").exists(), "ended": time.time(), "value": total}


    with connect(os.environ["RAY_ADDRESS"], None, connect_timeout_s=240):
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        ref = hold.options(scheduling_strategy=strategy).remote(run_dir, 600)
        print("pool-shrink: task submitted to node", node_id, flush=True)
        result = ray.get(ref)
    (Path(run_dir) / "result.json").write_text(json.dumps(result))
    print("pool-shrink: task result", json.dumps(result), flush=True)
    """
)


def _patch_raycluster(cluster: ClusterInABox, patch: dict[str, Any]) -> None:
    rt = cluster.server.resource_type("rayclusters", "ray.io")
    cluster.server.patch(rt, cluster.namespace, cluster.ray_cluster, patch, "application/merge-patch+json", None)


def _raycluster(cluster: ClusterInABox) -> dict[str, Any]:
    obj = cluster.server.get("rayclusters", cluster.ray_cluster, cluster.namespace, "ray.io")
    assert obj is not None
    return obj


def _cpu_group(raycluster: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in raycluster["spec"]["workerGroupSpecs"] if g["groupName"] == GROUP["name"])


class _PoolWatch:
    """Polls the pool every second: the ``cpu`` worker pods (when each started leaving), the names the group's
    ``workersToDelete`` listed (first seen), ``minReplicas`` over time, and each alive Ray node (last seen)."""

    def __init__(self, cluster: ClusterInABox) -> None:
        self.cluster = cluster
        self.pods: dict[str, dict[str, Any]] = {}
        self.leaving: dict[str, float] = {}
        self.listed: dict[str, float] = {}
        self.min_replicas: list[tuple[float, int]] = []
        self.node_alive: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _PoolWatch:
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._poll()
            except Exception:  # an object changed between two reads: the next poll sees the new state
                pass

    def _poll(self) -> None:
        now = time.time()
        present = set()
        for pod in self.cluster.server.objects("pods", self.cluster.namespace):
            labels = pod["metadata"].get("labels") or {}
            if labels.get("ray.io/cluster") != self.cluster.ray_cluster or labels.get("ray.io/group") != "cpu":
                continue
            name = pod["metadata"]["name"]
            seen = self.pods.setdefault(name, {"ip": None})
            seen["ip"] = pod["status"].get("podIP") or seen["ip"]
            if pod["metadata"].get("deletionTimestamp"):
                self.leaving.setdefault(name, now)
            else:
                present.add(name)
        for name in self.pods:
            if name not in present:
                self.leaving.setdefault(name, now)
        group = _cpu_group(_raycluster(self.cluster))
        for name in (group.get("scaleStrategy") or {}).get("workersToDelete") or []:
            self.listed.setdefault(name, now)
        low = int(group.get("minReplicas") or 0)
        if not self.min_replicas or self.min_replicas[-1][1] != low:
            self.min_replicas.append((now, low))
        for node in self.cluster.ray_nodes():
            self.node_alive[node["node_id"]] = time.time()

    def summary(self) -> str:
        start = self.min_replicas[0][0] if self.min_replicas else 0.0
        rel = {
            "pods": self.pods,
            "leaving": {k: round(v - start, 1) for k, v in self.leaving.items()},
            "listed": {k: round(v - start, 1) for k, v in self.listed.items()},
            "min_replicas": [(round(t - start, 1), v) for t, v in self.min_replicas],
        }
        return json.dumps(rel, default=str)


class _TriggerLoop:
    """``RayPoolTrigger`` event after event, carrying the state on, as the sensor and the triggerer do."""

    def __init__(self, settings: dict[str, Any], cycles_per_event: int = 3) -> None:
        self.settings = settings
        self.cycles = cycles_per_event
        self.points: list[dict[str, Any]] = []
        self.errors: list[Any] = []
        self._state: dict[str, Any] | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _TriggerLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = _event(self.settings, self._state, self._seq, self.cycles)
            except Exception as exc:  # reported by the test's assertion on errors
                self.errors.append(repr(exc))
                self._stop.wait(1.0)
                continue
            self._state, self._seq = event["state"], event["seq"]
            self.points.extend(event["points"])
            self.errors.extend(event["errors"])
            if event["error"]:
                self.errors.append(event["error"])


def _driver_pod(node_id: str, run_dir: Path, ray_address: str) -> dict[str, Any]:
    env = [
        {"name": "RAY_ADDRESS", "value": ray_address},
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mlk8s-ray-auth", "key": "auth_token"}}},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": DRIVER_POD, "labels": {"app.kubernetes.io/name": DRIVER_POD}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "mlk8s-pod",
            "nodeSelector": {"mlk8s.io/pool": "stateless"},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 50000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "driver",
                    "image": IMAGE,
                    "command": ["python", "-c", DRIVER, node_id, str(run_dir)],
                    "env": env,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def _driver_phase(cluster: ClusterInABox) -> str | None:
    pod = cluster.server.get("pods", DRIVER_POD, cluster.namespace)
    return None if pod is None else pod["status"].get("phase")


def _alive(cluster: ClusterInABox) -> set[str]:
    """The node ids of the alive Ray nodes."""
    return {n["node_id"] for n in cluster.ray_nodes()}


def _logs(cluster: ClusterInABox, pod: str, container: str | None = None) -> list[str]:
    try:
        return cluster.logs(pod, container)[-20:]
    except KeyError:  # no such pod, or its container has not started
        return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


@pytest.fixture
def pool_restored(cluster: ClusterInABox) -> Iterator[int]:
    """Yields the shipped idle timeout; afterwards the pool is as found: the driver pod gone, no ``cpu`` worker,
    every ``minReplicas`` 0, that idle timeout back, only the head alive in the GCS."""
    shipped_idle = int(_raycluster(cluster)["spec"]["autoscalerOptions"]["idleTimeoutSeconds"])
    yield shipped_idle
    with cluster.api_client("admin") as api:
        try:
            client.CoreV1Api(api).delete_namespaced_pod(DRIVER_POD, cluster.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
    specs = [{**g, "minReplicas": 0} for g in _raycluster(cluster)["spec"]["workerGroupSpecs"]]
    _patch_raycluster(cluster, {"spec": {"workerGroupSpecs": specs}})
    cluster.scale_worker_group("cpu", 0, tuple(p["metadata"]["name"] for p in cluster.ray_pods("worker", "cpu")))
    _patch_raycluster(cluster, {"spec": {"autoscalerOptions": {"idleTimeoutSeconds": shipped_idle}}})
    wait_until(lambda: not cluster.ray_pods("worker", "cpu"), 120, cluster.describe)
    wait_until(lambda: cluster.server.get("pods", DRIVER_POD, cluster.namespace) is None, 60, cluster.describe)
    wait_until(lambda: len(cluster.ray_nodes()) == 1, 120, cluster.describe, 2.0)


def test_the_pool_shrinks_by_its_idle_worker_and_keeps_the_busy_one_until_its_task_ends(
    cluster: ClusterInABox,
    airflow_api: dict[str, str],  # noqa: F811
    pool_restored: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlk8s_airflow.sensors.ray_pool import RayPoolSensor

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", cluster.kubernetes_connection("triggerer"))
    api = {"conn_type": "http", "host": airflow_api["base"], "login": "reader", "password": airflow_api["password"]}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_DEFAULT", json.dumps(api))
    monkeypatch.setenv(AUTH_TOKEN_ENV, cluster.ray_token)
    settings = (
        RayPoolSensor(
            task_id="size_ray_pool",
            actuator="kuberay-cooperate",
            groups=[GROUP],
            ray_address=cluster.ray_address,
            raycluster_name=cluster.ray_cluster,
            namespace=cluster.namespace,
            # The fixture's backlog is 4 task slots: at 2 CPUs a task, two workers of 4 CPUs.
            policy={"scale_down_window_s": 1, "cpus_per_task": 2},
            interval_s=1,
        )
        .settings()
        .to_json()
    )
    run_dir = cluster.storage / "pool-shrink"
    run_dir.mkdir(mode=0o777)
    run_dir.chmod(0o777)  # the driver and the Ray workers run as uid 50000
    triggerer = str(cluster.identity("triggerer").name)
    autoscaler = f"system:serviceaccount:{cluster.namespace}:{cluster.ray_cluster}"
    audit_from = len(cluster.server.audit)
    denied_before = {r.describe() for r in cluster.rbac_usage("triggerer").ungranted}
    assert _min_replicas(cluster) == 0 and not cluster.ray_pods("worker", "cpu"), cluster.describe()
    assert pool_restored == 300  # as shipped; the test's one deviation follows
    _patch_raycluster(cluster, {"spec": {"autoscalerOptions": {"idleTimeoutSeconds": IDLE_TIMEOUT_S}}})

    with _PoolWatch(cluster) as watch, _TriggerLoop(settings) as trigger:

        def seen() -> str:
            driver = _logs(cluster, DRIVER_POD)
            scaler = _logs(cluster, cluster.head_pod()["metadata"]["name"], "autoscaler")
            return (
                f"watch {watch.summary()}; trigger {trigger.points[-3:]} {trigger.errors}; driver {driver}; "
                f"autoscaler {scaler}; {cluster.describe()}"
            )

        # 1. Queued tasks: the trigger raises minReplicas to 2; two worker pods start and join Ray.
        wait_until(lambda: _min_replicas(cluster) == 2, 120, seen)
        pods = wait_until(
            lambda: (
                (ps := cluster.ray_pods("worker", "cpu"))
                and len(ps) == 2
                and all(p["status"].get("podIP") for p in ps)
                and ps
            ),
            180,
            seen,
        )
        ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
        nodes = wait_until(
            lambda: (ns := cluster.ray_nodes()) and set(ips.values()) <= {n["ip"] for n in ns if not n["head"]} and ns,
            300,
            seen,
            2.0,
        )
        node_of = {name: next(n["node_id"] for n in nodes if n["ip"] == ip) for name, ip in ips.items()}
        busy, idle = sorted(ips)

        # 2. A real Ray task, pinned to the busy worker's node, from a driver pod.
        with cluster.api_client("admin") as admin:
            pod = _driver_pod(node_of[busy], run_dir, cluster.ray_service_address)
            client.CoreV1Api(admin).create_namespaced_pod(cluster.namespace, pod)
        started = wait_until(
            lambda: (
                _read_json(run_dir / "started.json")
                or ((phase := _driver_phase(cluster)) in ("Succeeded", "Failed") and {"driver": phase})
            ),
            300,
            seen,
        )
        assert "node_id" in started, f"the driver pod ended before its task started; {seen()}"
        assert started["node_id"] == node_of[busy], (started, node_of)

        # 3. The queue drains: the idle worker goes (listed in workersToDelete, deleted, its node leaves).
        drained_at = time.time()
        for run_id, task_id in POOL_TASKS:
            _set_state(airflow_api, run_id, task_id, "success")
        wait_until(lambda: idle in watch.leaving and node_of[idle] not in _alive(cluster), 240, seen, 2.0)
        assert idle in watch.listed and watch.listed[idle] <= watch.leaving[idle], seen()
        # The busy worker stays for at least another idle timeout (and a few autoscaler updates) after that.
        hold_until = time.time() + IDLE_TIMEOUT_S + 15
        while time.time() < hold_until:
            assert busy not in watch.leaving and busy not in watch.listed, seen()
            assert _driver_phase(cluster) == "Running", seen()
            time.sleep(1.0)
        assert [p["metadata"]["name"] for p in cluster.ray_pods("worker", "cpu")] == [busy], seen()
        assert node_of[busy] in _alive(cluster), seen()

        # 4. The task ends with its result, on its node, in its one execution.
        released_at = time.time()
        (run_dir / "release").write_text("done\n")
        wait_until(lambda: _driver_phase(cluster) in ("Succeeded", "Failed"), 120, seen)
        assert _driver_phase(cluster) == "Succeeded", seen()
        result = _read_json(run_dir / "result.json")
        assert result is not None, seen()
        assert result["released"] and result["value"] == sum(i * i for i in range(1000)), result
        assert (result["node_id"], result["pid"], result["started"]) == (
            started["node_id"], started["pid"], started["started"],
        ), (result, started)  # fmt: skip

        # 5. The busy worker, idle now, is removed the same way.
        wait_until(lambda: busy in watch.leaving and node_of[busy] not in _alive(cluster), 240, seen, 2.0)
        assert busy in watch.listed, seen()
        wait_until(lambda: _min_replicas(cluster) == 0, 60, seen)

    # The idle worker went while the task ran; the busy one was never listed, deleted or gone from Ray until after.
    assert watch.leaving[idle] < result["ended"], watch.summary()
    assert watch.listed[busy] > result["ended"] and watch.leaving[busy] > result["ended"], watch.summary()
    assert watch.node_alive[node_of[busy]] >= result["ended"], watch.summary()
    assert watch.node_alive[node_of[idle]] < result["ended"], watch.summary()
    # The trigger moved minReplicas only: up for the queue, down to the busy worker, then to 0.
    assert [v for _, v in watch.min_replicas] == [0, 2, 1, 0], watch.summary()
    assert not trigger.errors, trigger.errors
    running = [p for p in trigger.points if p["t"] < released_at]
    assert running and all(p["target"] >= 1 for p in running), running
    assert any(p["target"] == 1 and p["t"] > drained_at for p in running), running

    calls = {(r.verb, r.resource) for r in cluster.server.audit[audit_from:] if r.user == triggerer}
    assert {v for v, _ in calls} <= {"get", "list", "watch", "patch"}, calls  # it deletes no pod
    assert {res for v, res in calls if v == "patch"} == {"rayclusters"}, calls
    usage = cluster.rbac_usage("triggerer")
    assert {r.describe() for r in usage.ungranted} <= denied_before, usage.explain()
    scaler = [r for r in cluster.server.audit[audit_from:] if r.user == autoscaler]
    assert any(r.verb == "patch" for r in scaler), {(r.verb, r.combined_resource) for r in scaler}
    assert all(r.allowed for r in scaler), {(r.verb, r.combined_resource, r.allowed) for r in scaler}
