"""A container's environment and command line, resolved the way the kubelet resolves them.

Why written here: the kubelet's rules (pkg/kubelet/kubelet_pods.go ``makeEnvironmentVariables`` and
third_party/forked/golang/expansion) exist only in Go, and the tests depend on their exact corners:

* ``envFrom`` first (ConfigMaps and Secrets, in order, with ``prefix``; keys that are not valid variable
  names, i.e. not printable ASCII without ``=``, are skipped), then ``env`` in order, each entry able to refer to the ones before it;
* ``$(VAR)`` expands to a variable defined so far, an unknown ``$(VAR)`` stays as written, ``$$`` is a
  literal ``$``, any other ``$`` is kept; ``command`` and ``args`` expand against the final environment;
* ``valueFrom``: ``secretKeyRef`` and ``configMapKeyRef`` (``optional`` honoured), ``fieldRef``
  (``metadata.name|namespace|uid``, ``metadata.labels['k']``, ``metadata.annotations['k']``,
  ``spec.nodeName``, ``spec.serviceAccountName``, ``status.hostIP``, ``status.podIP``, ``status.podIPs``)
  and ``resourceFieldRef`` (limits/requests of cpu, memory, ephemeral-storage with a ``divisor``, rounded up;
  an unset limit is the node's allocatable), quantities parsed with ``kubernetes.utils.parse_quantity``;
* a missing Secret, ConfigMap or key raises :class:`ContainerConfigError` with the kubelet's message
  (``secret "x" not found``, ``couldn't find key k in Secret ns/x``); the kubelet reports it as
  ``CreateContainerConfigError`` and retries.

Not modelled: Service links (``<SVC>_SERVICE_HOST``; no ClusterIPs here), ``fileKeyRef``.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from kubernetes.utils import parse_quantity

Obj = dict[str, Any]
#: Kubernetes >= 1.34 (RelaxedEnvironmentVariableValidation): any printable ASCII but "=".
_ENV_NAME = re.compile(r"^[\x20-\x3c\x3e-\x7e]+$")


class ContainerConfigError(Exception):
    """The container cannot be created from its spec right now (the kubelet's CreateContainerConfigError)."""


class ObjectSource(Protocol):
    def get(self, plural: str, name: str, namespace: str | None = None, group: str = "") -> Obj | None: ...


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay, ``$$`` is ``$``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : end]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def _secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def _source(objects: ObjectSource, kind: str, name: str, namespace: str, optional: bool) -> dict[str, str] | None:
    plural = "secrets" if kind == "Secret" else "configmaps"
    obj = objects.get(plural, name, namespace)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    if kind == "Secret":
        return _secret_data(obj)
    data = dict(obj.get("data") or {})
    data.update({k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _key_ref(objects: ObjectSource, kind: str, ref: Mapping[str, Any], namespace: str) -> str | None:
    data = _source(objects, kind, ref.get("name", ""), namespace, bool(ref.get("optional")))
    if data is None:
        return None
    key = ref.get("key", "")
    if key not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name', '')}")
    return data[key]


_FIELD_MAP = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref(pod: Mapping[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    match = _FIELD_MAP.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path] or "")


def resource_field_ref(
    pod: Mapping[str, Any], container: Mapping[str, Any], ref: Mapping[str, Any], allocatable: Mapping[str, str]
) -> str:
    name = ref.get("containerName") or container["name"]
    target = next((c for c in pod["spec"]["containers"] if c["name"] == name), container)
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    resources = target.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "limits":
        value = allocatable.get(resource)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(resource)  # requests default to limits
    quantity = parse_quantity(str(value)) if value is not None else Decimal(0)
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(quantity / divisor)) if divisor else "0"


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    objects: ObjectSource,
    allocatable: Mapping[str, str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment: ``base`` (the image's), then ``envFrom``, then ``env``."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "ConfigMap"
        else:
            ref, kind = source.get("secretRef") or {}, "Secret"
        data = _source(objects, kind, ref.get("name", ""), namespace, bool(ref.get("optional")))
        for key, value in (data or {}).items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(str(var.get("value", "")), env.get)
            continue
        value: str | None
        if "secretKeyRef" in source:
            value = _key_ref(objects, "Secret", source["secretKeyRef"], namespace)
        elif "configMapKeyRef" in source:
            value = _key_ref(objects, "ConfigMap", source["configMapKeyRef"], namespace)
        elif "fieldRef" in source:
            value = field_ref(pod, source["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in source:
            value = resource_field_ref(pod, container, source["resourceFieldRef"], allocatable)
        else:
            raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def command_line(container: Mapping[str, Any], env: Mapping[str, str], image_entrypoint: list[str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; an unset ``command`` falls back to the image's."""
    command = [expand(str(c), env.get) for c in container.get("command") or []]
    args = [expand(str(a), env.get) for a in container.get("args") or []]
    if not command:
        command = list(image_entrypoint)
    return command + args
