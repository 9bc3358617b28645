"""Pytest fixtures for the mock API server. Import them into a conftest.py:

from tests.k8s_api.fixtures import k8s_api_client, k8s_kubeconfig, k8s_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_api.server import MockKubeServer


@pytest.fixture
def k8s_server() -> Iterator[MockKubeServer]:
    """A fresh server per test (namespaces default, kube-system, mlk8s; the three mock nodes), on a free port."""
    server = MockKubeServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def k8s_api_client(k8s_server: MockKubeServer) -> Iterator[Any]:
    api_client = k8s_server.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def k8s_kubeconfig(k8s_server: MockKubeServer, tmp_path: Path) -> Path:
    """A kubeconfig file for the server, default namespace ``mlk8s``: ``KubernetesHook(config_file=...)``."""
    return k8s_server.write_kubeconfig(tmp_path / "kubeconfig.yaml")
