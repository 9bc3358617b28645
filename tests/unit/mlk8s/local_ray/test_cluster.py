"""LocalRayCluster before it starts: bad arguments are refused naming the fix, and nothing runs."""

from __future__ import annotations

import pytest

from mlk8s.local_ray import LocalRayCluster
from mlk8s.local_ray.nodes import RayNodeError


def test_too_long_temp_dir_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="at most"):
        LocalRayCluster("/tmp/" + "x" * 80)


def test_address_before_start_says_to_start() -> None:
    with pytest.raises(RayNodeError, match="start"):
        _ = LocalRayCluster("/tmp/rl-unused").address


def test_the_default_is_loopback_only() -> None:
    assert LocalRayCluster("/tmp/rl-unused").host == "127.0.0.1"
