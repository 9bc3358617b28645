"""mlk8s pod-side library: what runs inside pods, and the pure decisions (no Airflow imports here)."""

from __future__ import annotations

__version__ = "0.1.0"
