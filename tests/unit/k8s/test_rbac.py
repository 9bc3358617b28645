"""RBAC from what the code calls (issue 10, defect 3): every Kubernetes API call each component makes is
recorded while the component really runs (the worker: our pod operators, sync and deferrable, and the Ray
pool sensor's first cycle; the triggerer: the pod trigger, a user's kill, and the Ray pool loop), then
evaluated against the Role helm-values/rbac.yaml binds to that component's ServiceAccount. A call the Role
does not grant fails, and so does a grant that no call used.

The calls are read from the mock API server's request log, one window per component. (When the cluster tier's
server authenticates each component as its ServiceAccount, the same evaluation runs on its per-identity log.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mlk8s.scaling import Decision, Worker
from mlk8s_airflow.names import TRIGGERER_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT
from tests.k8s_api import MockKubeServer, PodScript
from tests.unit.k8s.manifests import load_all, rbac_allows, rbac_checks
from tests.unit.mlk8s_airflow.actuators.test_kuberay import NAME, pod, raycluster
from tests.unit.mlk8s_airflow.operators.deferral import defer, first_event, rebuilt
from tests.unit.mlk8s_airflow.operators.test_pod_kubernetes import context_for, pod_op
from tests.unit.mlk8s_airflow.operators.test_training_kubernetes import training_op

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

Call = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
RESULT = {"model_uri": "s3://m/model.safetensors", "steps": 1}


def role_for(service_account: str) -> list[dict[str, Any]]:
    docs = load_all("rbac.yaml")
    binding = next(
        d for d in docs if d["kind"] == "RoleBinding" and any(s["name"] == service_account for s in d["subjects"])
    )
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == binding["roleRef"]["name"])
    return role["rules"]


def granted(rules: list[dict[str, Any]]) -> set[Call]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


class Recorder:
    """The calls made between ``start()`` and ``stop()``, as the API server authorizes them."""

    def __init__(self, server: MockKubeServer) -> None:
        self.server = server
        self.calls: set[Call] = set()
        self._from = 0

    def start(self) -> None:
        self._from = len(self.server.requests)

    def stop(self) -> None:
        self.calls |= {c for r in self.server.requests[self._from :] for c in rbac_checks(r.method, r.path, r.query)}


def _ray_pool(server: MockKubeServer, api: Any) -> Any:
    from mlk8s_airflow.actuators.base import ActuatorMode
    from mlk8s_airflow.actuators.kuberay import KubeRayActuator

    server.put_object(raycluster(False))  # the cluster's state, seeded behind the API (not a call of ours)
    for name in ("pool-cpu-a", "pool-cpu-b"):
        server.put_object(pod(name))
    return KubeRayActuator(api, name=NAME, namespace="mlk8s", mode=ActuatorMode.KUBERAY_OWN, sleep=lambda _: None)


def _pool_cycle(actuator: Any, decision_id: str) -> None:
    members = actuator.members()
    workers = [Worker(id=m.id, group="cpu", busy=False, started_at=0.0, idle_since=0.0) for m in members]
    shrink = [Decision("cpu", current=len(members), target=len(members) - 1, remove=(members[-1].id,), reason="idle")]
    actuator.apply(shrink, workers, decision_id)


def _worker_calls(server: MockKubeServer, kubeconfig: Path, api: Any, rec: Recorder) -> None:
    rec.start()
    server.script_pod("job", logs=["ok"], xcom={"rows": 1})
    pod_op(kubeconfig).execute(context_for("job"))
    server.script_pod("job", logs=["boom"], exit_code=1)
    with pytest.raises(Exception, match="returned a failure"):
        pod_op(kubeconfig).execute(context_for("job"))
    server.script_pod("train", PodScript(logs=["step"], xcom=RESULT))
    training_op(kubeconfig, deferrable=False).execute(context_for("train"))
    rec.stop()
    # Deferrable: the worker creates the pod and defers; the triggerer waits; the worker resumes.
    server.script_pod("train", PodScript(logs=["step"], xcom=RESULT))
    ctx = context_for("train")
    rec.start()
    deferred = defer(lambda: training_op(kubeconfig).execute(ctx))
    rec.stop()
    event = first_event(rebuilt(deferred.trigger))
    rec.start()
    training_op(kubeconfig).trigger_reentry(ctx, event)
    _pool_cycle(_ray_pool(server, api), "worker-first-cycle")
    rec.stop()


def _triggerer_calls(server: MockKubeServer, kubeconfig: Path, api: Any, rec: Recorder) -> None:
    server.script_pod("train", PodScript(logs=["step"], xcom=RESULT))
    ctx = context_for("train")
    deferred = defer(lambda: training_op(kubeconfig).execute(ctx))
    rec.start()
    event = first_event(rebuilt(deferred.trigger))
    rec.stop()
    training_op(kubeconfig).trigger_reentry(ctx, event)  # the worker resumes (its calls are not the triggerer's)
    server.script_pod("train", logs=["step"], keep_running=True)
    killed = defer(lambda: training_op(kubeconfig).execute(context_for("train")))
    rec.start()
    asyncio.run(rebuilt(killed.trigger).on_kill())
    rec.stop()
    actuator = _ray_pool(server, api)
    rec.start()
    _pool_cycle(actuator, "triggerer-loop")
    rec.stop()


@pytest.mark.parametrize(
    ("service_account", "component"),
    [(WORKER_SERVICE_ACCOUNT, _worker_calls), (TRIGGERER_SERVICE_ACCOUNT, _triggerer_calls)],
    ids=["worker", "triggerer"],
)
def test_each_components_role_grants_exactly_what_it_calls(
    k8s_server: MockKubeServer, k8s_kubeconfig: Path, k8s_api_client: Any, service_account: str, component: Any
) -> None:
    rules = role_for(service_account)
    rec = Recorder(k8s_server)
    component(k8s_server, k8s_kubeconfig, k8s_api_client, rec)
    denied = sorted(c for c in rec.calls if not rbac_allows(rules, *c))
    unused = sorted(granted(rules) - rec.calls)
    assert denied == [], f"{service_account} calls what its Role does not grant: {denied}"
    assert unused == [], f"{service_account}'s Role grants what no call uses: {unused}"


def test_the_evaluation_has_teeth() -> None:
    """The Role of the triggerer before this fix denied the Ray pool loop's calls."""
    old_triggerer = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
    ]
    loop_calls = {("ray.io", "rayclusters", "get"), ("ray.io", "rayclusters", "patch"), ("", "pods", "list")}
    assert not any(rbac_allows(old_triggerer, *c) for c in loop_calls)
    assert all(rbac_allows(role_for(TRIGGERER_SERVICE_ACCOUNT), *c) for c in loop_calls)
