"""The cluster tier's fixtures: one cluster-in-a-box per session, set up from what we ship.

Every test under tests/cluster is marked ``cluster`` and ``slow`` (``make test-cluster`` runs them, ``make test``
too, ``make test-fast`` not).
The tier needs root (network namespaces, mounts); without it every test here is skipped, saying why.

Fixture API (for the tier's tests)
----------------------------------

``cluster`` (session): a started :class:`tests.cluster.box.ClusterInABox`. Booting it runs the deployment
guide's steps (docs/deploy.md, else the Secrets and Install sections of docs/kubernetes.md) against the mock
API server: ``kubectl create namespace``, ``kubectl apply -f helm-values/...``, the Secrets exactly as the
docs create them, ``helm ... kuberay/ray-cluster`` = helm-values/raycluster.yaml, ``helm ... airflow`` = the
chart's ServiceAccounts named by helm-values/airflow-values.yaml. It waits until the Ray head pod is Ready
(real ``ray start`` in its own network namespace; the worker groups start at their shipped replicas, 0).

* ``cluster.server``: the :class:`tests.k8s_api.MockKubeServer` (RBAC, Pod Security admission,
  ServiceAccount admission and in-cluster HTTPS on; ``server.audit`` records every authorization check,
  ``server.drain_node(node)``, ``server.disrupt_pod(ns, name, "preempted")``, ``server.objects(...)``).
* ``cluster.namespace`` (``mlk8s``), ``cluster.airflow_namespace`` (``airflow``), ``cluster.ray_cluster``
  (``mlk8s-ray``), ``cluster.service_accounts`` (component -> ServiceAccount name in ``airflow``).
* ``cluster.kubeconfig(component)`` -> Path: a kubeconfig authenticating as that component's
  ServiceAccount (``"worker"``, ``"triggerer"``, ``"scheduler"``, ``"api-server"``, ``"dag-processor"``),
  or ``"admin"`` (group ``system:masters``) for set-up steps; default namespace ``mlk8s``.
  ``cluster.kubernetes_connection(component)`` -> the JSON for ``AIRFLOW_CONN_KUBERNETES_DEFAULT``.
  ``cluster.api_client(component)`` -> a ``kubernetes.client.ApiClient`` with those credentials.
* ``cluster.rbac_usage(component)`` -> :class:`tests.k8s_api.audit.RbacUsage`: the component's calls so far
  judged against helm-values/rbac.yaml (``.ungranted``, ``.unused``, ``.ok``, ``.explain()``); the lower
  level is ``tests.k8s_api.audit.rbac_usage(records, rbac_objects, user)``.
* Ray: ``cluster.ray_token`` (from Secret ``mlk8s/mlk8s-ray-auth``; it equals this process's
  :func:`mlk8s.ray_auth.process_token`), ``cluster.ray_address`` (``<head pod IP>:6379``, reachable from
  this process), ``cluster.ray_service_address`` (the head Service's FQDN:6379, what pods resolve),
  ``cluster.ray_pods(node_type=None, group=None)``, ``cluster.head_pod()``, ``cluster.ray_nodes()`` (alive
  GCS nodes), ``cluster.wait_for_ray_nodes(count)``, ``cluster.scale_worker_group(group, replicas,
  workers_to_delete=())``. The head runs KubeRay's autoscaler sidecar for real (cooperate mode, as shipped):
  it reads and patches the RayCluster through the in-cluster API with its own ServiceAccount.
* Disruptions: ``cluster.drain(node)`` (``kubectl drain``: the Eviction API, PDBs apply; returns each pod's
  outcome), ``cluster.preempt(pod)`` (the scheduler's preemption: DisruptionTarget, then SIGTERM, the pod's
  grace period, SIGKILL, the pod deleted), ``cluster.server.disrupt_pod(ns, pod, Disruption.evicted())``
  (a kubelet's node-pressure eviction: killed at once, the pod stays Failed, reason Evicted). Nodes:
  ``stateful-node-1`` (tainted), ``stateless-node-1``, ``stateless-gpu-node-1``.
* ``cluster.storage`` -> Path: a directory mounted at the same path in every pod and visible here, the stand-in
  for cloud storage (URIs ``file://<cluster.storage>/...``). Host paths outside it are not shared: each
  container has its own root filesystem (an overlay) and its own /tmp.
* ``cluster.pod_ips(service)``: the IPs a Service name resolves to in pods (this process has no cluster DNS:
  connect to pod IPs). ``cluster.logs(pod, container=None)``, ``cluster.describe()`` (pod states, for
  assertion messages), ``cluster.apply(obj, namespace)`` (admin ``kubectl apply``).
* ``tests.cluster.box.wait_until(predicate, timeout_s, what)``: the bounded wait used everywhere here.

Pods name images: ``ghcr.io/mlk8s/mlk8s:*`` runs as uid 50000 with the project's virtualenv first on PATH;
KPO's ``alpine:*`` sidecar as root; any other image waits in ErrImagePull. Tests share the session's
cluster: leave it as found (delete your pods, scale worker groups back).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.box import ClusterInABox

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterInABox]:
    """The session's cluster-in-a-box (see the module docstring); stopped, with all it made, at the end."""
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root: network namespaces, veth pairs and mounts")
    checkout = Path(__file__).resolve().parents[2]
    if checkout.is_relative_to("/tmp"):
        # Each pod gets its own /tmp (tests/k8s_api/pod_sandbox.py), which hides a checkout (and its .venv,
        # the pods' image) under /tmp: the Ray head would crash-loop until the boot timeout.
        pytest.fail(f"the cluster tier cannot run from a checkout under /tmp ({checkout}): clone it elsewhere")
    box = ClusterInABox().start()
    try:
        yield box
    finally:
        box.stop()
