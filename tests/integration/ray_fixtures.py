"""One real local Ray cluster for the whole test session, shared by every test file that asks for it.

Load it as a pytest plugin from a test module: ``pytest_plugins = ["tests.integration.ray_fixtures"]``.
The cluster has token auth on, its own temp dir and free ports, so it never meets clusters other people run
on this machine, and it is stopped when the session ends.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from mlk8s.local_ray import LocalRayCluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """A head (1 CPU) plus one 1-CPU worker node; tests may add their own workers and must remove them."""
    temp_dir = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    # A short drain: stopping at session end need not wait for running tasks.
    cluster = LocalRayCluster(temp_dir, head_cpus=1, drain_timeout_s=3.0)
    try:
        cluster.start()
        cluster.add_worker(num_cpus=1)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_client(ray_cluster: LocalRayCluster) -> Iterator[Any]:
    """This test process connected to :func:`ray_cluster` as a driver (the ``ray`` module, initialised)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray_cluster.enable_auth_in_this_process()
    ray.init(address=ray_cluster.address, logging_level="WARNING", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
