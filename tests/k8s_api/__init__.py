"""A stateful mock Kubernetes API server for tests, used through the real ``kubernetes`` client.

Use the fixtures: in a ``conftest.py`` write ``from tests.k8s_api.fixtures import *  # noqa: F403`` (or import
the names you need), then ask for ``k8s_server`` (a started :class:`MockKubeServer` with scripted pods),
``k8s_api_client`` (a ``kubernetes.client.ApiClient`` pointed at it) or ``k8s_kubeconfig`` (a kubeconfig file
path for ``KubernetesHook(config_file=...)``). The cluster tier (tests/cluster) builds the faithful variant:
RBAC, admission, a kubelet that runs pods in network namespaces, KubeRay. See docs/kubernetes.md.
"""

from __future__ import annotations

from tests.k8s_api.errors import ApiError
from tests.k8s_api.kubelet import DEFAULT_NODES, XCOM_SIDECAR, Disruption, Node, PodScript
from tests.k8s_api.server import Fault, MockKubeServer
from tests.k8s_api.server_records import RecordedRequest

__all__ = [
    "DEFAULT_NODES",
    "XCOM_SIDECAR",
    "ApiError",
    "Disruption",
    "Fault",
    "MockKubeServer",
    "Node",
    "PodScript",
    "RecordedRequest",
]
