"""The mock API server behaves like the real one where our code depends on it, through the real client."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.k8s_api import Disruption, MockKubeServer, PodScript, waiting
from tests.k8s_api.schemas import validate_object

NS = "mlk8s"
JSON_PATCH = "application/json-patch+json"


def pod_body(name: str = "work-1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"mlk8s.io/component": "preprocessing", "task": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "base", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
            "nodeSelector": {"mlk8s.io/pool": "stateless"},
            **spec,
        },
    }


def raycluster_body(name: str = "pool") -> dict[str, Any]:
    container = {"name": "ray", "image": "rayproject/ray:2.60.0", "resources": {"limits": {"cpu": "1"}}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [copy.deepcopy(container)]}}},
            "workerGroupSpecs": [
                {
                    "groupName": "cpu",
                    "replicas": 1,
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [copy.deepcopy(container)]}},
                }
            ],
        },
    }


@pytest.fixture
def core(k8s_api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_api_client)


@pytest.fixture
def custom(k8s_api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s_api_client)


def wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    return waiting.wait_for(predicate, timeout, interval_s=0.02)


def phase(core: client.CoreV1Api, name: str) -> str | None:
    try:
        return core.read_namespaced_pod(name, NS).status.phase
    except ApiException as exc:
        if exc.status == 404:
            return "<gone>"
        raise


# --- state and validation -------------------------------------------------------------------------------------


def test_create_stamps_metadata_and_defaults(core: client.CoreV1Api) -> None:
    pod = core.create_namespaced_pod(NS, pod_body())
    assert pod.metadata.uid and pod.metadata.creation_timestamp
    assert pod.metadata.namespace == NS and pod.metadata.generation == 1
    assert pod.spec.containers[0].termination_message_path == "/dev/termination-log"
    assert pod.status.phase == "Pending"
    again = core.read_namespaced_pod("work-1", NS)
    assert again.metadata.resource_version == pod.metadata.resource_version


def test_generate_name(core: client.CoreV1Api) -> None:
    body = pod_body()
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "gen-"
    pod = core.create_namespaced_pod(NS, body)
    assert pod.metadata.name.startswith("gen-") and len(pod.metadata.name) == len("gen-") + 5


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["spec"]["containers"][0].update(imagee="x"), "spec.containers[0].imagee"),
        (lambda b: b["spec"]["containers"][0].pop("name"), "spec.containers[0].name"),
        (lambda b: b["spec"].update(restartPolicy="Sometimes"), "spec.restartPolicy"),
        (lambda b: b["metadata"].update(name="Bad_Name"), "metadata.name"),
        (lambda b: b["metadata"]["labels"].update(task="x" * 64), "metadata.labels"),
        (
            lambda b: b["spec"]["containers"][0].update(resources={"limits": {"memory": "2 GB"}}),
            "spec.containers[0].resources.limits.memory",
        ),
        (lambda b: b["spec"]["containers"].append(dict(b["spec"]["containers"][0])), "spec.containers[1].name"),
    ],
)
def test_invalid_pod_is_rejected_with_the_field_named(core: client.CoreV1Api, mutate: Any, field: str) -> None:
    body = pod_body()
    mutate(body)
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(NS, body)
    assert info.value.status == 422
    assert field in info.value.body
    assert core.list_namespaced_pod(NS).items == []


def test_not_found_already_exists_and_unknown_namespace(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod("nope", NS)
    assert info.value.status == 404 and '"NotFound"' in info.value.body
    core.create_namespaced_pod(NS, pod_body())
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(NS, pod_body())
    assert info.value.status == 409 and "AlreadyExists" in info.value.body
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod("no-such-ns", pod_body())
    assert info.value.status == 404


def test_optimistic_concurrency_on_replace_and_patch(core: client.CoreV1Api) -> None:
    pod = core.create_namespaced_pod(NS, pod_body())
    stale = pod.metadata.resource_version
    patched = core.patch_namespaced_pod("work-1", NS, {"metadata": {"labels": {"a": "1"}}})
    assert int(patched.metadata.resource_version) > int(stale)
    pod.metadata.labels["b"] = "2"
    with pytest.raises(ApiException) as info:
        core.replace_namespaced_pod("work-1", NS, pod)
    assert info.value.status == 409 and "Conflict" in info.value.body
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_pod("work-1", NS, {"metadata": {"resourceVersion": stale, "labels": {"c": "3"}}})
    assert info.value.status == 409
    fresh = core.read_namespaced_pod("work-1", NS)
    fresh.metadata.labels["b"] = "2"
    replaced = core.replace_namespaced_pod("work-1", NS, fresh)
    assert replaced.metadata.labels == {**fresh.metadata.labels}
    assert "c" not in replaced.metadata.labels
    # A write that changes nothing keeps the resourceVersion, as on a real server.
    same = core.patch_namespaced_pod("work-1", NS, {"metadata": {"labels": {"b": "2"}}})
    assert same.metadata.resource_version == replaced.metadata.resource_version


def test_patch_flavours(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod_body())
    # Strategic merge (the client's default for a dict): containers merge by name.
    smp = core.patch_namespaced_pod("work-1", NS, {"spec": {"containers": [{"name": "base", "image": "busybox:1.37"}]}})
    assert smp.spec.containers[0].image == "busybox:1.37" and smp.spec.containers[0].command
    # JSON patch (a list body), including a failing test op that rejects the whole patch.
    jp = core.patch_namespaced_pod("work-1", NS, [{"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}])
    assert jp.metadata.annotations == {"k": "v"}
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_pod(
            "work-1",
            NS,
            [
                {"op": "test", "path": "/metadata/annotations/k", "value": "other"},
                {"op": "remove", "path": "/metadata/annotations"},
            ],
        )
    assert info.value.status == 422
    assert core.read_namespaced_pod("work-1", NS).metadata.annotations == {"k": "v"}
    # Merge patch: null deletes.
    mp = core.patch_namespaced_pod(
        "work-1", NS, {"metadata": {"annotations": None}}, _content_type="application/merge-patch+json"
    )
    assert mp.metadata.annotations is None


def test_pod_spec_is_immutable_and_status_is_kubelet_owned(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod_body())
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_pod("work-1", NS, {"spec": {"nodeSelector": {"mlk8s.io/pool": "stateful"}}})
    assert info.value.status == 422 and "Forbidden" in info.value.body
    kept = core.patch_namespaced_pod("work-1", NS, {"status": {"phase": "Succeeded"}})
    assert kept.status.phase == "Pending"


def test_list_with_label_and_field_selectors(core: client.CoreV1Api) -> None:
    for name in ("a-1", "b-1", "b-2"):
        core.create_namespaced_pod(NS, pod_body(name))
    core.patch_namespaced_pod("b-2", NS, {"metadata": {"labels": {"already_checked": "True"}}})

    def names(**kw: Any) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod(NS, **kw).items)

    assert names(label_selector="task in (b-1,b-2)") == ["b-1", "b-2"]
    assert names(label_selector="task in (b-1,b-2),already_checked!=True,!airflow-worker") == ["b-1"]
    assert names(label_selector="already_checked") == ["b-2"]
    assert names(field_selector="metadata.name=a-1") == ["a-1"]
    assert names(field_selector="status.phase!=Pending") == []
    with pytest.raises(ApiException) as info:
        core.list_namespaced_pod(NS, label_selector="a in b")
    assert info.value.status == 400


# --- scripted pod lifecycles ----------------------------------------------------------------------------------


def test_scripted_success_streams_logs_and_terminates_like_the_kubelet(
    k8s_server: MockKubeServer, core: client.CoreV1Api
) -> None:
    k8s_server.script_pod("work", logs=["epoch 1", "epoch 2", "done"], exit_code=0, line_interval_s=0.05)
    core.create_namespaced_pod(NS, pod_body())
    wait_for(lambda: phase(core, "work-1") == "Running")
    stream = core.read_namespaced_pod_log(
        "work-1", NS, container="base", follow=True, timestamps=True, _preload_content=False
    )
    lines = [line.decode() for line in stream.stream()]
    text = "".join(lines)
    assert [line.split(" ", 1)[1] for line in text.splitlines()] == ["epoch 1", "epoch 2", "done"]
    assert all(line[:4].isdigit() and line.split(" ", 1)[0].endswith("Z") for line in text.splitlines())
    pod = wait_for(lambda: (p := core.read_namespaced_pod("work-1", NS)).status.phase == "Succeeded" and p)
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert pod.spec.node_name == "stateless-node-1"
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "PodCompleted")
    raw = k8s_server.get("pods", "work-1", NS)
    assert raw is not None
    validate_object(raw)  # what the kubelet wrote is itself a valid Pod
    reasons = [e.reason for e in core.list_namespaced_event(NS, field_selector="involvedObject.name=work-1").items]
    assert reasons[:2] == ["Scheduled", "Pulled"] and "Started" in reasons


def test_scripts_are_consumed_in_order_preempted_then_succeeds(
    k8s_server: MockKubeServer, core: client.CoreV1Api
) -> None:
    k8s_server.script_pod({"task": "train"}, logs=["step 1", "step 2"], disruption="preempted")
    k8s_server.script_pod({"task": "train"}, logs=["resumed"], exit_code=0)
    core.create_namespaced_pod(NS, pod_body("train"))
    first = wait_for(lambda: (p := k8s_server.get("pods", "train", NS)) and p["status"]["phase"] == "Failed" and p)
    cond = next(c for c in first["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (cond["status"], cond["reason"]) == ("True", "PreemptionByScheduler")
    assert first["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    assert k8s_server.log_lines(NS, "train") == ["step 1", "step 2"]
    core.delete_namespaced_pod("train", NS)
    core.create_namespaced_pod(NS, pod_body("train"))
    wait_for(lambda: phase(core, "train") == "Succeeded")
    assert k8s_server.log_lines(NS, "train") == ["resumed"]


def test_kubelet_eviction_and_vanishing_preemption(k8s_server: MockKubeServer, core: client.CoreV1Api) -> None:
    k8s_server.script_pod("ev", disruption=Disruption.evicted())
    k8s_server.script_pod("drained", disruption=("DisruptionTarget", "EvictionByEvictionAPI"))
    k8s_server.script_pod("gone", disruption=Disruption.preempted(vanish=True))
    core.create_namespaced_pod(NS, pod_body("ev"))
    core.create_namespaced_pod(NS, pod_body("gone"))
    wait_for(lambda: phase(core, "ev") == "Failed")
    evicted = core.read_namespaced_pod("ev", NS)
    assert evicted.status.reason == "Evicted"
    assert evicted.status.container_statuses[0].state.terminated.exit_code == 137
    wait_for(lambda: phase(core, "gone") == "<gone>")
    core.create_namespaced_pod(NS, pod_body("drained"))
    wait_for(lambda: phase(core, "drained") == "Failed")
    drained = k8s_server.get("pods", "drained", NS)
    assert drained is not None
    validate_object(drained)
    cond = next(c for c in drained["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert cond["reason"] == "EvictionByEvictionAPI"


def test_placement_is_checked_against_pools_and_taints(k8s_server: MockKubeServer, core: client.CoreV1Api) -> None:
    # A training pod asking for the stateful pool without tolerating its taint never schedules.
    k8s_server.script_pod("untolerated", exit_code=0)
    core.create_namespaced_pod(NS, pod_body("untolerated", nodeSelector={"mlk8s.io/pool": "stateful"}))
    k8s_server.script_pod("tolerated", exit_code=0)
    tolerations = [{"key": "mlk8s.io/pool", "operator": "Equal", "value": "stateful", "effect": "NoSchedule"}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "mlk8s.io/pool", "operator": "In", "values": ["stateful"]}]}
                ]
            }
        }
    }
    core.create_namespaced_pod(NS, pod_body("tolerated", nodeSelector=None, tolerations=tolerations, affinity=affinity))
    wait_for(lambda: phase(core, "tolerated") == "Succeeded")
    assert core.read_namespaced_pod("tolerated", NS).spec.node_name == "stateful-node-1"
    pending = wait_for(lambda: (p := core.read_namespaced_pod("untolerated", NS)).status.conditions and p)
    scheduled = pending.status.conditions[0]
    assert (scheduled.type, scheduled.status, scheduled.reason) == ("PodScheduled", "False", "Unschedulable")
    assert "untolerated taint" in scheduled.message
    assert pending.status.phase == "Pending"


def test_unscripted_pods_stay_pending(k8s_server: MockKubeServer, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod_body())
    time.sleep(3 * k8s_server.step_s)
    assert phase(core, "work-1") == "Pending"
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("work-1", NS)
    assert info.value.status == 400 and "waiting to start" in info.value.body


def test_manual_control_disrupts_a_running_pod(k8s_server: MockKubeServer, core: client.CoreV1Api) -> None:
    k8s_server.script_pod("work", PodScript(logs=[f"line {i}" for i in range(1000)], line_interval_s=0.01))
    core.create_namespaced_pod(NS, pod_body())
    wait_for(lambda: phase(core, "work-1") == "Running")
    k8s_server.disrupt_pod(NS, "work-1", "evicted_by_api")
    assert phase(core, "work-1") == "<gone>"


# --- PodDisruptionBudgets and eviction --------------------------------------------------------------------------


def test_pdb_crud_status_and_eviction(k8s_server: MockKubeServer, k8s_api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_api_client)
    policy = client.PolicyV1Api(k8s_api_client)
    k8s_server.script_pod("train", PodScript(logs=["x"] * 1000, line_interval_s=0.05))
    core.create_namespaced_pod(NS, pod_body("train"))
    wait_for(lambda: phase(core, "train") == "Running")
    pdb: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "train-pdb"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"task": "train"}}},
    }
    created = policy.create_namespaced_pod_disruption_budget(NS, pdb)
    assert created.metadata.uid
    read = policy.read_namespaced_pod_disruption_budget("train-pdb", NS)
    assert (read.status.current_healthy, read.status.disruptions_allowed) == (1, 0)
    assert [p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(NS).items] == ["train-pdb"]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "train", "namespace": NS}}
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod_eviction("train", NS, eviction)
    assert info.value.status == 429 and "disruption budget" in info.value.body
    bad = copy.deepcopy(pdb)
    bad["metadata"]["name"] = "both"
    bad["spec"]["maxUnavailable"] = 0
    with pytest.raises(ApiException) as info:
        policy.create_namespaced_pod_disruption_budget(NS, bad)
    assert info.value.status == 422
    policy.delete_namespaced_pod_disruption_budget("train-pdb", NS)
    core.create_namespaced_pod_eviction("train", NS, eviction)
    assert phase(core, "train") == "<gone>"


# --- RayCluster custom objects ------------------------------------------------------------------------------------


def test_raycluster_crud_validation_and_conflicts(custom: client.CustomObjectsApi) -> None:
    args = ("ray.io", "v1", NS, "rayclusters")
    created = custom.create_namespaced_custom_object(*args, raycluster_body())
    assert created["metadata"]["generation"] == 1 and created["kind"] == "RayCluster"
    bad = raycluster_body("bad")
    bad["spec"]["workerGroupSpecs"][0]["replica"] = 2  # typo
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(*args, bad)
    assert info.value.status == 422 and "spec.workerGroupSpecs[0].replica" in info.value.body
    bad = raycluster_body("bad")
    bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "lots"
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(*args, bad)
    assert info.value.status == 422

    # Merge patch (the client's default for a dict) of the scaling fields bumps generation and resourceVersion.
    rv = created["metadata"]["resourceVersion"]
    merged = custom.patch_namespaced_custom_object(
        *args, "pool", {"spec": {"workerGroupSpecs": created["spec"]["workerGroupSpecs"]}}
    )
    assert merged["metadata"]["resourceVersion"] == rv  # no change, no write
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
        {"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": ["w-1"]}},
    ]
    with pytest.raises(ApiException) as info:  # the client sends merge-patch unless told otherwise
        custom.patch_namespaced_custom_object(*args, "pool", ops)
    assert info.value.status == 400 and "application/json-patch+json" in info.value.body
    patched = custom.patch_namespaced_custom_object(*args, "pool", ops, _content_type=JSON_PATCH)
    assert patched["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    assert patched["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as info:  # same ops again: the test op sees a newer resourceVersion
        custom.patch_namespaced_custom_object(*args, "pool", ops, _content_type=JSON_PATCH)
    assert info.value.status == 422
    stale = dict(created)
    with pytest.raises(ApiException) as info:
        custom.replace_namespaced_custom_object(*args, "pool", stale)
    assert info.value.status == 409
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object(*args, "pool", {"metadata": {"resourceVersion": rv}, "spec": {}})
    assert info.value.status == 409
    # Status is a subresource: the main endpoint ignores it, /status writes only it.
    custom.patch_namespaced_custom_object(*args, "pool", {"status": {"state": "ready"}})
    assert "status" not in custom.get_namespaced_custom_object(*args, "pool")
    custom.patch_namespaced_custom_object_status(*args, "pool", {"status": {"state": "ready"}})
    current = custom.get_namespaced_custom_object(*args, "pool")
    assert current["status"] == {"state": "ready"} and current["metadata"]["generation"] == 2
    listed = custom.list_namespaced_custom_object(*args)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["pool"]
    custom.delete_namespaced_custom_object(*args, "pool")
    with pytest.raises(ApiException) as info:
        custom.get_namespaced_custom_object(*args, "pool")
    assert info.value.status == 404


# --- faults, watch, auth ---------------------------------------------------------------------------------------------


def test_injected_faults_hit_only_matching_requests_and_run_out(
    k8s_server: MockKubeServer, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod(NS, pod_body())
    k8s_server.inject_fault(500, method="GET", path=r"/pods/work-1$", times=2)
    k8s_server.inject_fault(429, method="PATCH", times=1)
    assert core.list_namespaced_pod(NS).items  # not matched
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            core.read_namespaced_pod("work-1", NS)
        assert info.value.status == 500
    assert core.read_namespaced_pod("work-1", NS).metadata.name == "work-1"
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_pod("work-1", NS, {"metadata": {"labels": {"a": "b"}}})
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "1"
    assert [r.status for r in k8s_server.requests if r.method == "PATCH"] == [429]


def test_watch_streams_changes(k8s_server: MockKubeServer, custom: client.CustomObjectsApi) -> None:
    args = ("ray.io", "v1", NS, "rayclusters")
    custom.create_namespaced_custom_object(*args, raycluster_body())
    seen: list[tuple[str, int]] = []

    def watcher() -> None:
        w = watch.Watch()
        for ev in w.stream(custom.list_namespaced_custom_object, *args, timeout_seconds=3):
            seen.append((ev["type"], ev["object"]["spec"]["workerGroupSpecs"][0]["replicas"]))
            if len(seen) == 2:
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    time.sleep(0.3)
    custom.patch_namespaced_custom_object(
        *args,
        "pool",
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2}],
        _content_type=JSON_PATCH,
    )
    t.join(5)
    assert seen == [("ADDED", 1), ("MODIFIED", 2)]


def test_bearer_token_is_required_when_configured() -> None:
    with MockKubeServer(token="s3cret") as server:
        ok = client.CoreV1Api(server.api_client())
        assert ok.list_namespaced_pod(NS).items == []
        cfg = client.Configuration()
        cfg.host = server.url
        with pytest.raises(ApiException) as info:
            client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_pod(NS)
        assert info.value.status == 401


def test_delete_preconditions_tail_lines_and_oom(k8s_server: MockKubeServer, core: client.CoreV1Api) -> None:
    k8s_server.script_pod(
        "work", logs=["a", "b", "c"], exit_code=137, termination_reason="OOMKilled", termination_message="oom"
    )
    pod = core.create_namespaced_pod(NS, pod_body())
    done = wait_for(lambda: (p := core.read_namespaced_pod("work-1", NS)).status.phase == "Failed" and p)
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (137, "OOMKilled", "oom")

    def log(**kw: Any) -> bytes:
        return core.read_namespaced_pod_log("work-1", NS, _preload_content=False, **kw).data

    assert log(tail_lines=2) == b"b\nc\n"
    assert log(since_seconds=3600) == b"a\nb\nc\n"
    assert log() == b"a\nb\nc\n"
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=pod.metadata.resource_version))
    with pytest.raises(ApiException) as info:
        core.delete_namespaced_pod("work-1", NS, body=stale)
    assert info.value.status == 409
    fresh = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid))
    assert core.delete_namespaced_pod("work-1", NS, body=fresh).metadata.deletion_timestamp is not None
    assert phase(core, "work-1") == "<gone>"


# --- the mock KubeRay operator ---------------------------------------------------------------------------------------


def _ray_pods(server: MockKubeServer, group: str | None = None) -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in server.objects("pods", NS)
        if p["metadata"]["labels"].get("ray.io/cluster") == "pool"
        and (group is None or p["metadata"]["labels"].get("ray.io/group") == group)
        and p["status"].get("phase") == "Running"
    )


@pytest.mark.parametrize("autoscaling", [True, False])
def test_kuberay_operator_follows_replicas_and_workers_to_delete(autoscaling: bool) -> None:
    with MockKubeServer(kuberay_operator=True) as server:
        custom = client.CustomObjectsApi(server.api_client())
        args = ("ray.io", "v1", NS, "rayclusters")
        body = raycluster_body()
        body["spec"]["enableInTreeAutoscaling"] = autoscaling
        body["spec"]["workerGroupSpecs"][0]["replicas"] = 3
        custom.create_namespaced_custom_object(*args, body)
        workers = wait_for(lambda: len(w := _ray_pods(server, "cpu")) == 3 and w)
        assert len(_ray_pods(server, "headgroup")) == 1
        pod = server.get("pods", workers[0], NS)
        assert pod is not None and pod["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
        # The operator rewrites the status as pods become ready; once all are, it stays put.
        status = wait_for(
            lambda: (
                (c := custom.get_namespaced_custom_object(*args, "pool")).get("status", {}).get("state") == "ready"
                and c
            )
        )["status"]
        assert (status["desiredWorkerReplicas"], status["readyWorkerReplicas"], status["maxWorkerReplicas"]) == (
            3,
            3,
            4,
        )
        # Remove one named (idle) worker: exactly that pod goes, in both modes.
        victim = workers[1]
        cluster = custom.get_namespaced_custom_object(*args, "pool")
        patch = {
            "metadata": {"resourceVersion": cluster["metadata"]["resourceVersion"]},
            "spec": {
                "workerGroupSpecs": [
                    {
                        **cluster["spec"]["workerGroupSpecs"][0],
                        "replicas": 2,
                        "scaleStrategy": {"workersToDelete": [victim]},
                    }
                ]
            },
        }
        custom.patch_namespaced_custom_object(*args, "pool", patch)
        left = wait_for(lambda: len(w := _ray_pods(server, "cpu")) == 2 and w)
        assert victim not in left and set(left) < set(workers)
        # Lower replicas without naming pods: KubeRay deletes at random only when in-tree autoscaling is off.
        custom.patch_namespaced_custom_object(
            *args,
            "pool",
            [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1}],
            _content_type=JSON_PATCH,
        )
        server.reconcile_rayclusters()
        assert len(_ray_pods(server, "cpu")) == (2 if autoscaling else 1)
        # A preempted worker is deleted and, up to replicas (1), replaced; deleting the cluster deletes its pods.
        preempted = _ray_pods(server, "cpu")[0]
        server.disrupt_pod(NS, preempted, "preempted")
        wait_for(lambda: len(w := _ray_pods(server, "cpu")) == 1 and preempted not in w)
        wait_for(lambda: server.get("pods", preempted, NS) is None)
        custom.delete_namespaced_custom_object(*args, "pool")
        assert _ray_pods(server) == []


def test_drain_node_respects_pdbs(k8s_server: MockKubeServer, k8s_api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_api_client)
    for name in ("guarded", "free"):
        k8s_server.script_pod(name, PodScript(keep_running=True))
        core.create_namespaced_pod(NS, pod_body(name))
    wait_for(lambda: phase(core, "guarded") == phase(core, "free") == "Running")
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"task": "guarded"}}},
    }
    client.PolicyV1Api(k8s_api_client).create_namespaced_pod_disruption_budget(NS, pdb)
    outcome = k8s_server.drain_node("stateless-node-1")
    assert outcome[f"{NS}/free"] == "evicted"
    assert outcome[f"{NS}/guarded"].startswith("429 TooManyRequests")
    assert phase(core, "free") == "<gone>" and phase(core, "guarded") == "Running"
