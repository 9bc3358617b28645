from __future__ import annotations

from tests.k8s_api.fixtures import k8s_api_client, k8s_kubeconfig, k8s_server  # noqa: F401
