"""Deployment-level settings of mlk8s, read from Airflow's configuration (section ``[mlk8s]``).

The backend is chosen per deployment, not per DAG: ``[mlk8s] backend`` (env ``AIRFLOW__MLK8S__BACKEND``) is
``local`` in the demo's Airflow home and ``kubernetes`` in the Helm values, so the very same DAG file runs in
both places. A task may still override it with ``backend=``.
"""

from __future__ import annotations

import enum
import os

from mlk8s_airflow.names import POD_NAMESPACE, POD_SERVICE_ACCOUNT

SECTION = "mlk8s"
ENV_BACKEND = "AIRFLOW__MLK8S__BACKEND"


class Backend(enum.StrEnum):
    KUBERNETES = "kubernetes"
    LOCAL = "local"


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says how to fix it."""


def parse_backend(value: str, *, setting: str) -> Backend:
    try:
        return Backend(value.strip().lower())
    except ValueError:
        choices = ", ".join(repr(b.value) for b in Backend)
        raise ConfigError(
            f"{setting} is {value!r}, which is not a backend; use one of {choices} "
            f"(e.g. export {ENV_BACKEND}=local to run pods as local processes)."
        ) from None


def _conf_get(option: str, fallback: str) -> str:
    """Read ``[mlk8s] option``; the environment variable wins, as everywhere in Airflow."""
    env = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{option.upper()}")
    if env is not None:
        return env
    try:
        from airflow.sdk import conf

        return str(conf.get(SECTION, option, fallback=fallback))
    except Exception:
        return fallback


def resolve_backend(override: str | None = None) -> Backend:
    """The backend a task runs on: its own ``backend=`` if set, else the deployment's ``[mlk8s] backend``."""
    if override is not None:
        return parse_backend(override, setting="the task's backend= argument")
    return parse_backend(_conf_get("backend", Backend.KUBERNETES.value), setting=f"[{SECTION}] backend")


def default_namespace() -> str:
    return _conf_get("namespace", POD_NAMESPACE)


def pod_service_account() -> str:
    """The ServiceAccount our pods run as (created by helm-values/rbac.yaml, no API permissions)."""
    return _conf_get("pod_service_account", POD_SERVICE_ACCOUNT)
