"""Actuators that resize the Ray worker pool: KubeRay RayCluster (cooperate / own) and local Ray nodes."""
