"""The process kubelet really runs pods: processes, env from Secrets, users, logs, exit codes, signals, network."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from tests.k8s_api import Disruption, MockKubeServer
from tests.k8s_api.images import ImageRegistry
from tests.k8s_api.waiting import wait_for

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the process kubelet needs root (network namespaces, mounts)"),
]

NS = "mlk8s"
IMAGE = "ghcr.io/mlk8s/mlk8s:0.1.0"


@pytest.fixture(scope="module")
def server() -> Iterator[MockKubeServer]:
    SHARED.mkdir(exist_ok=True)
    try:
        with MockKubeServer() as srv:
            srv.run_pods(
                backoff_s=0.5,
                shared_dirs=[SHARED],
                images=ImageRegistry(only=["ghcr.io/mlk8s/mlk8s:*", "busybox:*", "alpine:*"]),
            )
            yield srv
    finally:
        shutil.rmtree(SHARED, ignore_errors=True)


#: Mounted into every pod at the same path: this tier's stand-in for shared storage (a bucket).
SHARED = Path("/var/tmp") / f"mlk8s-runtime-test-{os.getpid()}"


@pytest.fixture
def shared_dir(server: MockKubeServer) -> Path:
    SHARED.chmod(0o777)
    return SHARED


@pytest.fixture
def core(server: MockKubeServer) -> Iterator[client.CoreV1Api]:
    with server.api_client() as api:
        yield client.CoreV1Api(api)


def pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": IMAGE, "command": command}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"mlk8s.io/pool": "stateless"},
            "containers": [container],
            **spec,
        },
    }


def ended(server: MockKubeServer, name: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(
        lambda: (p := server.get("pods", name, NS)) and p["status"].get("phase") in ("Succeeded", "Failed") and p,
        timeout,
        f"pod {name} to end",
    )


def removed(core: client.CoreV1Api, name: str, since: str, timeout: float = 30.0) -> dict[str, Any]:
    """Watch the pod from resourceVersion ``since`` until it is deleted; returns its final state (DELETED event)."""
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod,
        NS,
        field_selector=f"metadata.name={name}",
        resource_version=since,
        timeout_seconds=int(timeout),
    ):
        if event["type"] == "DELETED":
            w.stop()
            return core.api_client.sanitize_for_serialization(event["object"])
    raise AssertionError(f"pod {name} not deleted within {timeout:.0f}s")


def main_status(p: dict[str, Any]) -> dict[str, Any]:
    """The main container's status ({} before the kubelet reported one)."""
    return next((c for c in p["status"].get("containerStatuses") or [] if c["name"] == "main"), {})


def test_a_pod_runs_and_its_log_and_exit_code_come_back(server: MockKubeServer, core: client.CoreV1Api) -> None:
    script = "import os, sys; print('hello from', os.getuid(), os.getgid(), os.getpid(), flush=True); print('err', file=sys.stderr); sys.exit(3)"
    core.create_namespaced_pod(
        NS, pod("hello", ["python", "-c", script], securityContext={"runAsUser": 50000, "runAsGroup": 1234})
    )
    done = ended(server, "hello")
    assert done["status"]["phase"] == "Failed"
    term = main_status(done)["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert done["status"]["podIP"].startswith("10.2")
    log = core.read_namespaced_pod_log("hello", NS, _preload_content=False).data.decode()
    assert log.splitlines() == ["hello from 50000 1234 1", "err"]
    stamped = core.read_namespaced_pod_log("hello", NS, timestamps=True, _preload_content=False).data.decode()
    assert stamped.splitlines()[0].endswith("Z hello from 50000 1234 1")
    reasons = [e.reason for e in core.list_namespaced_event(NS, field_selector="involvedObject.name=hello").items]
    assert reasons[:1] == ["Scheduled"] and {"Pulled", "Created", "Started"} <= set(reasons)


def test_env_from_secrets_configmaps_fields_and_expansion(server: MockKubeServer, core: client.CoreV1Api) -> None:
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "creds"}, "data": {"token": base64.b64encode(b"s3cret").decode()}}
    )
    core.create_namespaced_config_map(NS, {"metadata": {"name": "settings"}, "data": {"MODE": "fast", "bad-key": "x"}})
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        {"name": "JOINED", "value": "$(POD)-$(CFG_MODE)-$$(POD)-$(UNDEFINED)"},
    ]
    container = {
        "env": env,
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "args": ["$(JOINED)", "$$(POD)"],
        "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}},
    }
    script = "import os, sys; e = os.environ; print(e['TOKEN'], e['POD'], e['IP'], e['APP'], e['MEM'], e['CPU'], 'CFG_bad-key' in e); print(sys.argv[1:])"
    core.create_namespaced_pod(NS, pod("envs", ["python", "-c", script], container=container))
    done = ended(server, "envs")
    lines = core.read_namespaced_pod_log("envs", NS, _preload_content=False).data.decode().splitlines()
    assert lines == [
        f"s3cret envs {done['status']['podIP']} envs 256 250 True",  # "bad-key" is a valid name since 1.34
        "['envs-fast-$(POD)-$(UNDEFINED)', '$(POD)']",
    ]


def test_a_missing_secret_key_is_a_create_container_config_error_until_it_exists(
    server: MockKubeServer, core: client.CoreV1Api
) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "auth_token"}}}]
    core.create_namespaced_pod(
        NS, pod("waits", ["python", "-c", "import os; print(os.environ['TOKEN'])"], container={"env": env})
    )

    def waiting() -> dict[str, Any] | None:
        p = server.get("pods", "waits", NS)
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        return statuses and statuses[0]["state"].get("waiting")

    state = wait_for(lambda: (w := waiting()) and w.get("reason") == "CreateContainerConfigError" and w)
    assert state["message"] == 'secret "late" not found'
    assert server.get("pods", "waits", NS)["status"]["phase"] == "Pending"
    core.create_namespaced_secret(NS, {"metadata": {"name": "late"}, "stringData": {"other": "x"}})
    wait_for(lambda: (w := waiting()) and w.get("message") == f"couldn't find key auth_token in Secret {NS}/late")
    core.patch_namespaced_secret("late", NS, {"stringData": {"auth_token": "now"}})
    assert ended(server, "waits")["status"]["phase"] == "Succeeded"
    assert core.read_namespaced_pod_log("waits", NS, _preload_content=False).data.decode() == "now\n"


def waiting_reason(server: MockKubeServer, name: str) -> tuple[str, str] | None:
    p = server.get("pods", name, NS)
    statuses = ((p or {}).get("status") or {}).get("containerStatuses") or []
    waiting = statuses[0]["state"].get("waiting") if statuses else None
    return (waiting.get("reason", ""), waiting.get("message", "")) if waiting else None


def test_run_as_non_root_with_a_root_image_is_refused(server: MockKubeServer, core: client.CoreV1Api) -> None:
    body = pod("rootless", ["true"], securityContext={"runAsNonRoot": True})
    body["spec"]["containers"][0]["image"] = "busybox:1.36"
    core.create_namespaced_pod(NS, body)
    reason, message = wait_for(
        lambda: (w := waiting_reason(server, "rootless")) and w[0] == "CreateContainerConfigError" and w
    )
    assert message.startswith('container has runAsNonRoot and image will run as root (pod: "rootless_mlk8s(')
    core.delete_namespaced_pod("rootless", NS)


def test_an_image_nobody_ships_cannot_be_pulled(server: MockKubeServer, core: client.CoreV1Api) -> None:
    body = pod("typo", ["true"])
    body["spec"]["containers"][0]["image"] = "ghcr.io/mlk8s/mlk8z:0.1.0"
    core.create_namespaced_pod(NS, body)
    wait_for(lambda: (w := waiting_reason(server, "typo")) and w[0] == "ErrImagePull")
    core.delete_namespaced_pod("typo", NS)


def test_files_a_pod_writes_are_owned_by_its_user_and_emptydirs_are_per_pod(
    server: MockKubeServer, core: client.CoreV1Api, shared_dir: Path
) -> None:
    shared = shared_dir
    write = f"import os; open('{shared}/out.txt', 'w').write('x'); open('/scratch/mine', 'w').write('1'); print(sorted(os.listdir('/scratch')), os.path.exists('{shared}/../should-not-exist'))"
    for name in ("writer-a", "writer-b"):
        body = pod(
            name,
            ["python", "-c", write],
            securityContext={"runAsUser": 50000, "fsGroup": 2000},
            volumes=[{"name": "scratch", "emptyDir": {}}],
        )
        body["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
        core.create_namespaced_pod(NS, body)
        assert ended(server, name)["status"]["phase"] == "Succeeded"
        assert core.read_namespaced_pod_log(name, NS, _preload_content=False).data.decode() == "['mine'] False\n"
    stat = (shared / "out.txt").stat()
    assert (stat.st_uid, stat.st_gid) == (50000, 0)


def test_pods_reach_each_other_by_ip_and_service_name_not_by_loopback(
    server: MockKubeServer, core: client.CoreV1Api
) -> None:
    serve = "import http.server as h; h.HTTPServer(('0.0.0.0', 8080), h.SimpleHTTPRequestHandler).serve_forever()"
    body = pod("web", ["python", "-c", serve], labels={"app": "web"})
    body["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    core.create_namespaced_pod(NS, body)
    core.create_namespaced_service(
        NS, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}}
    )
    ready = wait_for(
        lambda: (p := server.get("pods", "web", NS)) and main_status(p).get("ready") and p, what="web ready"
    )
    ip = ready["status"]["podIP"]
    probe = (
        "import sys, urllib.request as u\n"
        "def get(url):\n"
        "    try:\n"
        "        return u.urlopen(url, timeout=2).status\n"
        "    except Exception as exc:\n"
        "        return type(exc).__name__\n"
        f"print(get('http://{ip}:8080/'), get('http://web:8080/'), get('http://web.{NS}.svc.cluster.local:8080/'), get('http://127.0.0.1:8080/'))\n"
    )
    core.create_namespaced_pod(NS, pod("client", ["python", "-c", probe]))
    ended(server, "client")
    assert core.read_namespaced_pod_log("client", NS, _preload_content=False).data.decode() == "200 200 200 URLError\n"
    deleted = core.delete_namespaced_pod("web", NS, grace_period_seconds=0)
    removed(core, "web", deleted.metadata.resource_version)


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(
    server: MockKubeServer, core: client.CoreV1Api
) -> None:
    stubborn = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: print('got SIGTERM', flush=True))\nprint('up', flush=True)\nwhile True: time.sleep(0.1)"
    polite = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(75))\nprint('up', flush=True)\nwhile True: time.sleep(0.1)"
    for name, script in (("stubborn", stubborn), ("polite", polite)):
        core.create_namespaced_pod(NS, pod(name, ["python", "-c", script], terminationGracePeriodSeconds=2))
    for name in ("stubborn", "polite"):
        wait_for(
            lambda n=name: "up" in server.log_lines(NS, n) if server.get("pods", n, NS) else False, what=f"{name} up"
        )
    statuses: dict[str, Any] = {}
    for name in ("stubborn", "polite"):
        started = time.monotonic()
        deleted = core.delete_namespaced_pod(name, NS)
        assert deleted.metadata.deletion_timestamp is not None and deleted.metadata.deletion_grace_period_seconds == 2
        last = removed(core, name, deleted.metadata.resource_version)
        statuses[name] = (main_status(last)["state"], time.monotonic() - started)
    assert statuses["stubborn"][0]["terminated"]["exitCode"] == 137 and statuses["stubborn"][1] >= 2
    assert statuses["polite"][0]["terminated"]["exitCode"] == 75 and statuses["polite"][1] < 2


def test_restart_policy_on_failure_restarts_with_back_off(server: MockKubeServer, core: client.CoreV1Api) -> None:
    script = "import os, sys; p = '/scratch/n'; n = int(open(p).read()) if os.path.exists(p) else 0; open(p, 'w').write(str(n + 1)); print('run', n); sys.exit(0 if n == 2 else 1)"
    body = pod(
        "flaky", ["python", "-c", script], restartPolicy="OnFailure", volumes=[{"name": "scratch", "emptyDir": {}}]
    )
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    core.create_namespaced_pod(NS, body)
    done = ended(server, "flaky")
    status = main_status(done)
    assert done["status"]["phase"] == "Succeeded" and status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert server.log_lines(NS, "flaky") == ["run 0", "run 1", "run 2"]


def test_exec_runs_inside_the_container(server: MockKubeServer, core: client.CoreV1Api) -> None:
    body = pod("shell", ["sh", "-c", "echo ready > /tmp/marker; exec sleep 60"], securityContext={"runAsUser": 50000})
    core.create_namespaced_pod(NS, body)
    wait_for(lambda: (p := server.get("pods", "shell", NS)) and p["status"].get("phase") == "Running")
    out = stream(
        core.connect_get_namespaced_pod_exec, "shell", NS, container="main",
        command=["sh", "-c", "cat /tmp/marker; id -u; hostname; ps -o pid= -p 1 >/dev/null 2>&1; pgrep -c sleep"],
        stdout=True, stderr=True, stdin=False, tty=False,
    )  # fmt: skip
    assert out.split() == ["ready", "50000", "shell", "1"]
    core.delete_namespaced_pod("shell", NS, grace_period_seconds=0)


def test_eviction_of_a_running_pod_honours_its_budget(server: MockKubeServer, core: client.CoreV1Api) -> None:
    body = pod(
        "guarded",
        [
            "python",
            "-c",
            "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(75))\n"
            "print('up', flush=True)\nwhile True: time.sleep(0.1)",
        ],
        labels={"app": "guarded"},
    )
    core.create_namespaced_pod(NS, body)
    wait_for(
        lambda: (
            (p := server.get("pods", "guarded", NS))
            and main_status(p).get("ready")
            and "up" in server.log_lines(NS, "guarded")
        )
    )
    policy = client.PolicyV1Api(core.api_client)
    policy.create_namespaced_pod_disruption_budget(
        NS,
        {"metadata": {"name": "guard"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}},
    )
    eviction = {"metadata": {"name": "guarded", "namespace": NS}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction("guarded", NS, eviction)
    assert refused.value.status == 429
    policy.delete_namespaced_pod_disruption_budget("guard", NS)
    before = core.read_namespaced_pod("guarded", NS).metadata.resource_version
    core.create_namespaced_pod_eviction("guarded", NS, eviction)
    last = removed(core, "guarded", before)
    conditions = {c["type"]: c for c in last["status"]["conditions"]}
    assert conditions["DisruptionTarget"]["reason"] == "EvictionByEvictionAPI"
    assert main_status(last)["state"]["terminated"]["exitCode"] == 75


def test_a_drain_evicts_through_budgets_and_a_preemption_ignores_them(
    server: MockKubeServer, core: client.CoreV1Api
) -> None:
    polite = (
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(75))\n"
        "print('up', flush=True)\nwhile True: time.sleep(0.1)"
    )
    for name in ("drained", "kept"):
        core.create_namespaced_pod(NS, pod(name, ["python", "-c", polite], labels={"app": name}))
    for name in ("drained", "kept"):  # up once its SIGTERM handler is set (before that, PID 1 ignores SIGTERM)
        wait_for(lambda n=name: server.get("pods", n, NS) and "up" in server.log_lines(NS, n), what=f"{name} up")
    client.PolicyV1Api(core.api_client).create_namespaced_pod_disruption_budget(
        NS, {"metadata": {"name": "keep"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "kept"}}}}
    )
    before = core.read_namespaced_pod("kept", NS).metadata.resource_version
    outcome = server.drain_node("stateless-node-1")
    assert outcome[f"{NS}/drained"] == "evicted"
    assert outcome[f"{NS}/kept"].startswith("429 TooManyRequests")
    drained = removed(core, "drained", before)
    assert main_status(drained)["state"]["terminated"]["exitCode"] == 75
    server.disrupt_pod(NS, "kept", Disruption.preempted(vanish=True))
    kept = removed(core, "kept", before)
    reasons = {c["type"]: c.get("reason") for c in kept["status"]["conditions"]}
    assert reasons["DisruptionTarget"] == "PreemptionByScheduler"
    assert main_status(kept)["state"]["terminated"]["exitCode"] == 75
    client.PolicyV1Api(core.api_client).delete_namespaced_pod_disruption_budget("keep", NS)


def test_a_kubelet_eviction_kills_at_once_and_leaves_the_pod_failed(
    server: MockKubeServer, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod(
        NS, pod("pressured", ["python", "-c", "import time\nprint('up', flush=True)\ntime.sleep(600)"])
    )
    wait_for(lambda: server.get("pods", "pressured", NS) and "up" in server.log_lines(NS, "pressured"), what="up")
    server.disrupt_pod(NS, "pressured", Disruption.evicted())
    done = ended(server, "pressured")
    assert (done["status"]["phase"], done["status"]["reason"]) == ("Failed", "Evicted")
    assert main_status(done)["state"]["terminated"]["exitCode"] == 137
    assert {c["type"]: c.get("reason") for c in done["status"]["conditions"]}[
        "DisruptionTarget"
    ] == "TerminationByKubelet"
    core.delete_namespaced_pod("pressured", NS)


def test_kpo_reads_the_xcom_sidecar_through_the_emptydir_both_containers_mount(
    server: MockKubeServer, core: client.CoreV1Api
) -> None:
    """KPO's XCom path on a running pod: the main container writes return.json into the shared emptyDir and
    ends; KPO execs into the still-running sidecar, reads the file, and stops the sidecar."""
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager
    from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults

    body = pod(
        "xcom",
        ["sh", "-c", "echo '{\"steps\": 3}' > /airflow/xcom/return.json"],
        volumes=[{"name": "xcom", "emptyDir": {}}],
        securityContext={"runAsUser": 50000},
    )
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "xcom", "mountPath": "/airflow/xcom"}]
    body["spec"]["containers"].append(core.api_client.sanitize_for_serialization(PodDefaults.SIDECAR_CONTAINER))
    core.create_namespaced_pod(NS, body)
    wait_for(
        lambda: (p := server.get("pods", "xcom", NS)) and "terminated" in (main_status(p).get("state") or {}),
        30,
        "the main container to end",
    )
    assert PodManager(kube_client=core).extract_xcom(core.read_namespaced_pod("xcom", NS)).strip() == '{"steps": 3}'
    ended(server, "xcom")  # the sidecar stopped on KPO's kill: the pod ends
    core.delete_namespaced_pod("xcom", NS, grace_period_seconds=0)
