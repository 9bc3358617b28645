"""The cluster-in-a-box: a mock API server that enforces RBAC and Pod Security, a kubelet that really runs
pods in their own network namespaces, a KubeRay stand-in, set up by following the deployment guide.

:class:`ClusterInABox` boots it, runs the documented steps (tests/cluster/shipped.py: namespaces,
helm-values/rbac.yaml, the Secrets as the docs create them, the PDBs, the RayCluster the Helm values render
to, the Airflow chart's ServiceAccounts), waits for the Ray head pod to be Ready, and hands out credentials
per component. :meth:`ClusterInABox.stop` ends every process and namespace it made, also after a failure.

What this proves and what it cannot: see the module docstrings of tests/k8s_api/runtime.py (the kubelet),
tests/k8s_api/network.py, tests/k8s_api/rbac.py, tests/k8s_api/admission.py and tests/k8s_api/kuberay.py,
summed up in docs/kubernetes.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cluster import shipped
from tests.k8s_api.audit import RbacUsage, rbac_usage
from tests.k8s_api.images import ImageRegistry
from tests.k8s_api.kubelet import Disruption
from tests.k8s_api.rbac import UserInfo
from tests.k8s_api.server import ADMISSION_PLUGINS, MockKubeServer
from tests.k8s_api.waiting import wait_for

Obj = dict[str, Any]

NAMESPACE = "mlk8s"
AIRFLOW_NAMESPACE = "airflow"
RAY_CLUSTER = "mlk8s-ray"
#: Images a pod may name: the project's (Dockerfile, both variants) and KPO's XCom sidecar (alpine).
SHIPPED_IMAGES = ("ghcr.io/mlk8s/mlk8s:*", "alpine:*")


class ClusterNotReady(RuntimeError):
    """The box did not reach the state asked for in time; the message says what it saw."""


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: Callable[[], str], interval_s: float = 0.5) -> Any:
    """Poll ``predicate`` until truthy; on timeout raise :class:`ClusterNotReady` with ``what()``."""
    return wait_for(predicate, timeout_s, what, interval_s=interval_s, error=ClusterNotReady)


class ClusterInABox:
    """See the module docstring and the fixture API at the top of tests/cluster/conftest.py."""

    def __init__(self, *, ray_ready_timeout_s: float = 360.0, images: tuple[str, ...] = SHIPPED_IMAGES) -> None:
        self.ray_ready_timeout_s = ray_ready_timeout_s
        self.images = images
        self.namespace = NAMESPACE
        self.airflow_namespace = AIRFLOW_NAMESPACE
        self.ray_cluster = RAY_CLUSTER
        self.workdir = Path(tempfile.mkdtemp(prefix=f"mlk8s-box-{os.getpid()}-", dir="/var/tmp"))
        #: Mounted at the same path in every pod, and visible here: the stand-in for cloud storage.
        self.storage = self.workdir / "storage"
        self.server = MockKubeServer(
            namespaces=("default", "kube-system"),
            rbac=True,
            admission=ADMISSION_PLUGINS,
            kuberay_operator=True,
        )
        #: Component -> ServiceAccount (namespace airflow), as the Airflow chart creates them from our values.
        self.service_accounts = shipped.airflow_service_accounts(shipped.HELM_VALUES / "airflow-values.yaml")
        self.steps: list[shipped.Step] = []

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> ClusterInABox:
        try:
            # Pods (uid 50000) reach the storage through this directory's path: let them traverse it (mkdtemp
            # makes it 0700); the kubeconfigs beside it stay the test's own (kubeconfig()).
            self.workdir.chmod(0o711)
            self.storage.mkdir(parents=True)
            self.storage.chmod(0o777)
            self.server.start()
            self.server.run_pods(images=ImageRegistry(only=list(self.images)), shared_dirs=[self.storage])
            self._follow_the_guide()
            self.wait_for_head()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every pod (no grace), the network, the server; remove the box's directories."""
        with contextlib.suppress(Exception):
            self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ClusterInABox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- set-up: the deployment guide ---------------------------------------------------------------------------

    def _follow_the_guide(self) -> None:
        from mlk8s.ray_auth import process_token

        for guide in shipped.guide_paths():
            steps = shipped.DeploymentSteps.from_markdown(shipped.guide_sections(guide), process_token)
            for step in steps.steps:
                self._run_step(step)
                self.steps.append(step)

    def _run_step(self, step: shipped.Step) -> None:
        release = shipped.helm_release(step)
        if release is not None:
            _name, chart, namespace, values = release
            if chart.endswith("/ray-cluster"):
                for obj in shipped.load_manifests(shipped.HELM_VALUES / "raycluster.yaml"):
                    self.apply(obj, namespace)
            elif chart.endswith("/airflow"):
                accounts = shipped.airflow_service_accounts(shipped.REPO / values[0], release[0]) if values else {}
                for account in accounts.values():
                    self.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}, namespace)
            return
        for namespace, obj in shipped.iter_kubectl_objects(step):
            self.apply(obj, namespace)

    def apply(self, obj: Obj, namespace: str | None = None) -> Obj:
        """``kubectl apply`` as the admin: create, or replace the object if it exists."""
        group = obj["apiVersion"].rpartition("/")[0]
        rt = next(t for t in self.server._types.values() if t.group == group and t.kind == obj["kind"])
        ns = (obj["metadata"].get("namespace") or namespace or "default") if rt.namespaced else None
        current = self.server.get(rt.plural, obj["metadata"]["name"], ns, group)
        if current is None:
            return self.server.create(rt, ns, obj, None, None)
        return self.server.replace(rt, ns, obj["metadata"]["name"], obj, None)

    # --- identities ------------------------------------------------------------------------------------------

    def identity(self, component: str) -> UserInfo:
        """The user a component's requests are made as: ``system:serviceaccount:airflow:<its account>``."""
        if component not in self.service_accounts:
            raise KeyError(f"unknown component {component!r}; use one of {sorted(self.service_accounts)} or 'admin'")
        return UserInfo.service_account(self.airflow_namespace, self.service_accounts[component])

    def kubeconfig(self, component: str = "admin") -> Path:
        """A kubeconfig file for ``component`` (``worker``, ``triggerer``, ``scheduler``, ... or ``admin``)."""
        path = self.workdir / "kubeconfigs" / f"{component}.yaml"
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            token = self.server.token if component == "admin" else self.server.issue_token(self.identity(component))
            self.server.write_kubeconfig(path, self.namespace, token)
        return path

    def kubernetes_connection(self, component: str) -> str:
        """``AIRFLOW_CONN_KUBERNETES_DEFAULT`` for a component: its kubeconfig, namespace mlk8s."""
        return json.dumps(
            {
                "conn_type": "kubernetes",
                "extra": {"kube_config_path": str(self.kubeconfig(component)), "namespace": self.namespace},
            }
        )

    def api_client(self, component: str = "admin") -> Any:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(str(self.kubeconfig(component)), client_configuration=configuration)
        return client.ApiClient(configuration)

    def rbac_objects(self) -> list[Obj]:
        return shipped.load_manifests(shipped.HELM_VALUES / "rbac.yaml")

    def rbac_usage(self, component: str) -> RbacUsage:
        """The calls ``component`` made so far, judged against helm-values/rbac.yaml (tests/k8s_api/audit.py)."""
        return rbac_usage(self.server.audit, self.rbac_objects(), self.identity(component))

    # --- Ray ---------------------------------------------------------------------------------------------------

    @property
    def ray_token(self) -> str:
        secret = self.server.get("secrets", "mlk8s-ray-auth", self.namespace)
        if secret is None:
            raise ClusterNotReady(f"Secret {self.namespace}/mlk8s-ray-auth was not created by the guide's steps")
        data = secret.get("data") or {}
        if "auth_token" in data:
            return base64.b64decode(data["auth_token"]).decode()
        return str((secret.get("stringData") or {})["auth_token"])

    def ray_pods(self, node_type: str | None = None, group: str | None = None) -> list[Obj]:
        pods = []
        for pod in self.server.objects("pods", self.namespace):
            labels = pod["metadata"].get("labels") or {}
            if labels.get("ray.io/cluster") != self.ray_cluster or pod["metadata"].get("deletionTimestamp"):
                continue
            if node_type and labels.get("ray.io/node-type") != node_type:
                continue
            if group and labels.get("ray.io/group") != group:
                continue
            pods.append(pod)
        return pods

    def head_pod(self) -> Obj:
        heads = self.ray_pods("head")
        if not heads:
            raise ClusterNotReady(f"no Ray head pod; {self.describe()}")
        return heads[0]

    @property
    def ray_address(self) -> str:
        """The head's GCS as this (root-namespace) process reaches it: ``<head pod IP>:6379``."""
        return f"{self.head_pod()['status']['podIP']}:6379"

    @property
    def ray_service_address(self) -> str:
        """The head's GCS as pods name it (their /etc/hosts resolves it): the head Service's FQDN."""
        return f"{self.ray_cluster}-head-svc.{self.namespace}.svc.cluster.local:6379"

    def wait_for_head(self, timeout_s: float | None = None) -> Obj:
        return wait_until(
            lambda: next((p for p in self.ray_pods("head") if _pod_ready(p)), None),
            timeout_s or self.ray_ready_timeout_s,
            lambda: f"the Ray head pod to be Ready; {self.describe()}",
            1.0,
        )

    def ray_nodes(self) -> list[dict[str, Any]]:
        """Alive Ray nodes as the head's GCS reports them (``RAY_CLOUD_INSTANCE_ID`` is the pod name)."""
        from mlk8s.ray_gcs import GcsClient

        with GcsClient(self.ray_address, token=self.ray_token, timeout_s=10) as gcs:
            nodes = gcs.nodes()
        return [{"node_id": n.node_id, "ip": n.ip, "head": n.head, "labels": dict(n.labels)} for n in nodes]

    def wait_for_ray_nodes(self, count: int, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        """Wait until ``count`` nodes (head included) are alive in the GCS."""

        def alive() -> list[dict[str, Any]] | None:
            with contextlib.suppress(Exception):
                nodes = self.ray_nodes()
                return nodes if len(nodes) >= count else None
            return None

        return wait_until(alive, timeout_s, lambda: f"{count} alive Ray nodes; {self.describe()}", 2.0)

    def scale_worker_group(self, group: str, replicas: int, workers_to_delete: tuple[str, ...] = ()) -> Obj:
        """Set a group's ``replicas`` (and ``scaleStrategy.workersToDelete``) as an admin would with kubectl."""
        rt = self.server.resource_type("rayclusters", "ray.io")
        cluster = self.server.get("rayclusters", self.ray_cluster, self.namespace, "ray.io")
        assert cluster is not None
        groups = cluster["spec"]["workerGroupSpecs"]
        names = [g["groupName"] for g in groups]
        if group not in names:
            raise KeyError(f"no worker group {group!r} in RayCluster {self.ray_cluster}; groups: {names}")
        patched = []
        for g in groups:
            if g["groupName"] == group:
                g = {**g, "replicas": replicas, "scaleStrategy": {"workersToDelete": list(workers_to_delete)}}
            patched.append(g)
        patch = {"spec": {"workerGroupSpecs": patched}}
        return self.server.patch(rt, self.namespace, self.ray_cluster, patch, "application/merge-patch+json", None)

    # --- disruptions -------------------------------------------------------------------------------------------

    def drain(self, node: str) -> dict[str, str]:
        """``kubectl drain``: evict every running pod of ``node`` through the Eviction API (PDBs apply).

        Returns ``namespace/pod -> "evicted"`` or the API's refusal (``429 TooManyRequests: ...``).
        """
        return self.server.drain_node(node)

    def preempt(self, pod: str, namespace: str | None = None) -> Obj | None:
        """What the scheduler does to a victim: DisruptionTarget PreemptionByScheduler, then a graceful deletion
        with the pod's terminationGracePeriodSeconds (PDBs do not apply)."""
        return self.server.disrupt_pod(namespace or self.namespace, pod, Disruption.preempted(vanish=True))

    # --- inspection --------------------------------------------------------------------------------------------

    def pod_ips(self, service: str, namespace: str | None = None) -> list[str]:
        """The pod IPs a Service name resolves to inside pods (this process cannot resolve them itself)."""
        from tests.k8s_api.pod_dns import service_endpoints

        svc = self.server.get("services", service, namespace or self.namespace)
        if svc is None:
            raise KeyError(f"no Service {namespace or self.namespace}/{service}")
        return service_endpoints(svc, self.server.objects("pods"))

    def logs(self, pod: str, container: str | None = None, namespace: str | None = None) -> list[str]:
        return self.server.log_lines(namespace or self.namespace, pod, container)

    def describe(self) -> str:
        """Every pod of the namespace with its phase and container states, and the last KubeRay errors."""
        lines = []
        for pod in self.server.objects("pods", self.namespace):
            states = []
            for cs in (pod["status"].get("initContainerStatuses") or []) + (
                pod["status"].get("containerStatuses") or []
            ):
                state = next(iter(cs["state"]))
                detail = cs["state"][state].get("reason") or cs["state"][state].get("exitCode", "")
                text = f"{cs['name']}={state}" + (f"({detail})" if detail != "" else "")
                text += " ready" if cs.get("ready") else ""
                text += f" restarts={cs['restartCount']}" if cs.get("restartCount") else ""
                states.append(text)
            lines.append(f"{pod['metadata']['name']}: {pod['status'].get('phase')} [{', '.join(states)}]")
        errors = self.server.kuberay_errors[-3:]
        return "pods: " + ("; ".join(lines) or "none") + (f"; KubeRay errors: {errors}" if errors else "")


def _pod_ready(pod: Obj) -> bool:
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or []
    )
