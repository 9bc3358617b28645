"""Validation of objects against the same schemas a real API server uses.

Core kinds (Pod, PodDisruptionBudget, Role, ...) are checked against the official OpenAPI schemas that the
``kubernetes-validate`` package ships per Kubernetes version; custom resources (KubeRay's RayCluster) against
the ``openAPIV3Schema`` of their CustomResourceDefinition in ``../shared/schemas``. Unknown fields are
rejected (the API server's ``fieldValidation=Strict``, what kubectl sends), because in tests a silently
dropped typo is exactly the bug we want to catch.

On top of the schemas, the few semantic rules the API server enforces that bite in practice: object names
(DNS-1123), label syntax, resource quantities, container name uniqueness, PDB min/max exclusivity.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: The Kubernetes version whose schemas core objects are validated against.
KUBERNETES_VERSION = "1.37"

#: ``../shared/schemas`` seen from the repository root (CI clones the repo with ``shared/`` beside it).
SCHEMAS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "schemas"


def schemas_dir() -> Path:
    """The official schemas folder, or a clear error saying where it was expected."""
    if not (SCHEMAS_DIR / "kuberay" / "ray.io_rayclusters.yaml").is_file():
        raise FileNotFoundError(
            f"official schemas not found at {SCHEMAS_DIR}: the tests need the shared/ folder (with "
            "schemas/kuberay and schemas/airflow-chart) checked out beside the repository"
        )
    return SCHEMAS_DIR


@dataclass(frozen=True)
class FieldError:
    """One invalid field, named the way the API server names it (``spec.containers[0].image``)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


class ObjectInvalid(Exception):
    """The object breaks its schema; the server answers 422 with these causes."""

    def __init__(self, kind: str, name: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.name = name
        self.errors = errors
        detail = ", ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(f'{kind} "{name}" is invalid: {detail}')


def format_field_path(path: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_REQUIRED = re.compile(r"^'(.+?)' is a required property")
_UNEXPECTED = re.compile(r"\('(.+?)'(?:, '.+?')* (?:was|were) unexpected\)")


def _field_errors(validator: jsonschema.protocols.Validator, obj: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        reason = "FieldValueInvalid"
        if err.validator == "required" and (m := _REQUIRED.match(err.message)):
            path.append(m.group(1))
            reason = "FieldValueRequired"
        elif err.validator == "additionalProperties" and (m := _UNEXPECTED.search(err.message)):
            path.append(m.group(1))
            reason = "FieldValueNotSupported"
        elif err.validator == "enum":
            reason = "FieldValueNotSupported"
        errors.append(FieldError(format_field_path(path), err.message, reason))
        if len(errors) >= 20:
            break
    return errors


# --- core kinds: kubernetes-validate's schema files -------------------------------------------------------


@functools.cache
def _core_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    from kubernetes_validate import utils as kv
    from referencing import Registry, Resource

    version = [v for v in kv.all_versions() if kv.major_minor(v) <= KUBERNETES_VERSION][-1]
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = kv.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", version)
    definitions = kv.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


# --- custom resources: the CRD's openAPIV3Schema -----------------------------------------------------------


def _structural_to_json_schema(node: Any) -> Any:
    """Turn a CRD structural schema into a JSON schema with the API server's strict semantics.

    ``nullable`` becomes a null alternative, ``x-kubernetes-int-or-string`` accepts both, and objects with
    declared properties reject unknown ones unless ``x-kubernetes-preserve-unknown-fields`` says otherwise.
    """
    if isinstance(node, list):
        return [_structural_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural_to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    return out


@dataclass(frozen=True)
class CustomResource:
    """One served version of a CustomResourceDefinition."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    has_status: bool
    schema: dict[str, Any]

    @functools.cached_property
    def validator(self) -> jsonschema.protocols.Validator:
        return jsonschema.Draft202012Validator(self.schema)


def load_crd(path: Path) -> list[CustomResource]:
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec = crd["spec"]
    out = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        out.append(
            CustomResource(
                group=spec["group"],
                version=version["name"],
                plural=spec["names"]["plural"],
                kind=spec["names"]["kind"],
                namespaced=spec["scope"] == "Namespaced",
                has_status="status" in (version.get("subresources") or {}),
                schema=_structural_to_json_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"])),
            )
        )
    return out


@functools.cache
def kuberay_resources() -> tuple[CustomResource, ...]:
    base = schemas_dir() / "kuberay"
    return tuple(load_crd(base / "ray.io_rayclusters.yaml") + load_crd(base / "ray.io_rayjobs.yaml"))


# --- semantic rules the API server adds to the schemas -----------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")


def _check_name(name: Any, field: str, label: bool = False) -> Iterator[FieldError]:
    if not isinstance(name, str) or not name:
        yield FieldError(field, "name or generateName is required", "FieldValueRequired")
        return
    pattern, limit = (_DNS1123_LABEL, 63) if label else (_DNS1123_SUBDOMAIN, 253)
    if len(name) > limit or not pattern.match(name):
        yield FieldError(
            field,
            f"Invalid value: {name!r}: a lowercase RFC 1123 {'label' if label else 'subdomain'} must consist "
            f"of lower case alphanumeric characters, '-' or '.', at most {limit} characters",
        )


def _check_labels(labels: Any, field: str) -> Iterator[FieldError]:
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not _DNS1123_SUBDOMAIN.match(prefix)) or len(name) > 63 or not _LABEL_NAME.match(name):
            yield FieldError(f"{field}", f"Invalid value: {key!r}: name part must be a valid label key")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            yield FieldError(f"{field}", f"Invalid value: {value!r}: a valid label value must be 63 characters or less")


def _check_quantities(node: Any, path: list[Any]) -> Iterator[FieldError]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("limits", "requests") and path and path[-1] == "resources" and isinstance(value, dict):
                for res, qty in value.items():
                    if not _QUANTITY.match(str(qty)):
                        yield FieldError(
                            format_field_path([*path, key, res]),
                            f"Invalid value: {qty!r}: quantities must match the regular expression "
                            r"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                        )
            else:
                yield from _check_quantities(value, [*path, key])
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _check_quantities(item, [*path, i])


def _check_pod_spec(spec: Any, field: str) -> Iterator[FieldError]:
    if not isinstance(spec, dict):
        return
    if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        yield FieldError(
            f"{field}.restartPolicy",
            f'Unsupported value: {spec["restartPolicy"]!r}: supported values: "Always", "OnFailure", "Never"',
            "FieldValueNotSupported",
        )
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(group) or []):
            name = container.get("name") if isinstance(container, dict) else None
            yield from _check_name(name, f"{field}.{group}[{i}].name", label=True)
            if name in seen:
                yield FieldError(f"{field}.{group}[{i}].name", f"Duplicate value: {name!r}", "FieldValueDuplicate")
            seen.add(str(name))


def semantic_errors(obj: dict[str, Any]) -> list[FieldError]:
    meta = obj.get("metadata") or {}
    errors = list(_check_name(meta.get("name"), "metadata.name"))
    errors += _check_labels(meta.get("labels"), "metadata.labels")
    errors += _check_quantities(obj.get("spec"), ["spec"])
    kind = obj.get("kind")
    if kind == "Pod":
        errors += _check_pod_spec(obj.get("spec"), "spec")
    elif kind == "PodDisruptionBudget":
        spec = obj.get("spec") or {}
        if "minAvailable" in spec and "maxUnavailable" in spec:
            errors.append(FieldError("spec", "minAvailable and maxUnavailable cannot be both set"))
    elif kind == "RayCluster":
        spec = obj.get("spec") or {}
        head = (spec.get("headGroupSpec") or {}).get("template", {}).get("spec")
        errors += _check_pod_spec(head, "spec.headGroupSpec.template.spec")
        for i, group in enumerate(spec.get("workerGroupSpecs") or []):
            errors += _check_pod_spec(
                (group.get("template") or {}).get("spec"), f"spec.workerGroupSpecs[{i}].template.spec"
            )
            lo, hi, n = group.get("minReplicas"), group.get("maxReplicas"), group.get("replicas")
            if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
                errors.append(
                    FieldError(f"spec.workerGroupSpecs[{i}].minReplicas", "minReplicas must not exceed maxReplicas")
                )
            if isinstance(n, int) and n < 0:
                errors.append(FieldError(f"spec.workerGroupSpecs[{i}].replicas", "must be non-negative"))
    return errors


def validate_object(obj: dict[str, Any], custom: CustomResource | None = None) -> None:
    """Raise :class:`ObjectInvalid` naming every bad field, as the API server's 422 does."""
    kind = str(obj.get("kind", "?"))
    name = str((obj.get("metadata") or {}).get("name", ""))
    if custom is not None:
        validator = custom.validator
    else:
        try:
            validator = _core_validator(str(obj.get("apiVersion")), kind)
        except FileNotFoundError as exc:
            raise ObjectInvalid(kind, name, [FieldError("kind", f"no schema for {kind}: {exc}")]) from exc
    errors = _field_errors(validator, obj) + semantic_errors(obj)
    if errors:
        raise ObjectInvalid(kind, name, errors)
