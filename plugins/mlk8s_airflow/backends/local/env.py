"""A local pod's environment, resolved from its main container as the kubelet resolves it.

Values (with ``$(VAR)`` expansion), fieldRefs and resourceFieldRefs are computed here; Secret- and
ConfigMap-backed variables can only come from the Airflow worker's variable of the same name (the local
backend has no API server to read them from), and nothing else of the worker's environment leaks in.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kubernetes.utils import parse_quantity

from mlk8s_airflow.backends.podspec import PodSpecError
from mlk8s_airflow.backends.var_refs import expand_var_refs

if TYPE_CHECKING:
    from kubernetes.client import models as k8s

_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def _quantity(quantity: str) -> float:
    try:
        return float(parse_quantity(quantity))
    except ValueError:
        raise PodSpecError(f"resource quantity {quantity!r} is not valid: use e.g. '500m', '2', '4Gi'.") from None


def resource_value(container: k8s.V1Container, resource: str, divisor: str | None) -> str:
    """A resourceFieldRef (``limits.cpu``, ``requests.memory``...), rounded up to the divisor as on a node."""
    kind, _, name = resource.partition(".")
    resources = container.resources
    amounts: Mapping[str, str] = (getattr(resources, kind, None) or {}) if resources else {}
    if name in amounts:
        value = _quantity(str(amounts[name]))
    elif name == "cpu":  # unset limits default to the node's allocatable, as on a node
        value = float(os.cpu_count() or 1)
    else:
        value = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    div = _quantity(divisor) if divisor else 1.0
    return str(math.ceil(value / div))


def field_value(pod: k8s.V1Pod, path: str) -> str:
    """A fieldRef (``metadata.name``, ``metadata.labels['x']``, ``status.podIP``...) for this host."""
    meta = pod.metadata
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid or "",
        "spec.nodeName": socket.gethostname(),
        "spec.serviceAccountName": (pod.spec.service_account_name if pod.spec else None) or "default",
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = _LABEL_REF.match(path)
    if match:
        values = (meta.labels if match.group(1) == "labels" else meta.annotations) or {}
        return str(values.get(match.group(2), ""))
    raise PodSpecError(f"env fieldRef {path!r} is not supported by the local backend: use a plain value.")


def _check_env_from(container: k8s.V1Container) -> None:
    for source in container.env_from or []:
        ref = source.secret_ref or source.config_map_ref
        kind = "Secret" if source.secret_ref else "ConfigMap"
        if ref is not None and not ref.optional:
            raise PodSpecError(
                f"env_from {kind} {ref.name!r} cannot be read by the local backend: list the variables you "
                "need as secrets/env_vars instead (each is then taken from the worker's environment), or mark "
                "it optional."
            )


def _from_worker(var: k8s.V1EnvVar, worker_env: Mapping[str, str]) -> str | None:
    """A Secret- or ConfigMap-backed variable: the worker's variable of the same name, else an error."""
    src = var.value_from
    ref = src.secret_key_ref or src.config_map_key_ref
    kind = "Secret" if src.secret_key_ref is not None else "ConfigMap"
    if var.name in worker_env:
        return worker_env[var.name]
    if ref.optional:
        return None
    raise PodSpecError(
        f"env var {var.name!r} comes from {kind} {ref.name!r} key {ref.key!r}, which the local backend cannot "
        f"read: export {var.name} in the Airflow worker's environment (it is passed through to the local "
        "process, and to no other variable), or use the kubernetes backend."
    )


def resolve_env(
    pod: k8s.V1Pod, container: k8s.V1Container, inherited: Mapping[str, str], worker_env: Mapping[str, str]
) -> dict[str, str]:
    """The process environment: ``inherited`` plus the container's variables, in order."""
    _check_env_from(container)
    env: dict[str, str] = dict(inherited)
    for var in container.env or []:
        src = var.value_from
        if src is None:
            env[var.name] = expand_var_refs(var.value or "", env)
        elif src.field_ref is not None:
            env[var.name] = field_value(pod, src.field_ref.field_path)
        elif src.resource_field_ref is not None:
            ref = src.resource_field_ref
            env[var.name] = resource_value(container, ref.resource, ref.divisor)
        elif src.secret_key_ref is not None or src.config_map_key_ref is not None:
            value = _from_worker(var, worker_env)
            if value is not None:
                env[var.name] = value
    return env
