"""A real local Ray cluster of separate node processes (token auth on, loopback-only by default), and the
local pool service built on it. ``LocalRayCluster`` is the package's public face."""

from __future__ import annotations

from mlk8s.local_ray.cluster import LocalRayCluster

__all__ = ["LocalRayCluster"]
