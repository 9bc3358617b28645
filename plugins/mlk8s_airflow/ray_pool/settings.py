"""The Ray pool loop's settings: validated once, at the boundary, and plain JSON in the trigger's kwargs.

pydantic does the checking (types, unknown keys, required fields) over the policy's own dataclasses
(:class:`~mlk8s.scaling.WorkerGroupSpec`, :class:`~mlk8s.scaling.PolicyConfig`,
:class:`~mlk8s.scaling.ResourceDemand`), whose ``__post_init__`` checks the values. So a worker group is
defined once: the DAG's Params schema is generated from the same definition (:func:`worker_groups_schema`).
Every error names the argument and the fix, before the sensor does any work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from mlk8s.ray_gcs import GROUP_LABEL, check_address
from mlk8s.scaling import PolicyConfig, ResourceDemand, WorkerGroupSpec
from mlk8s_airflow.actuators.base import ActuatorMode

#: The dataclass behind each settings field that holds one, for naming the allowed keys in an error.
_SHAPES: dict[str, type] = {"groups": WorkerGroupSpec, "policy": PolicyConfig, "queue_pools": ResourceDemand}
EXAMPLE_GROUP = "{'name': 'cpu', 'min_workers': 0, 'max_workers': 4, 'cpus_per_worker': 2}"


class RayPoolSettings(BaseModel):
    """Everything the loop needs. ``groups``: the worker groups to size; ``queue_pools`` maps Airflow pools to
    the shape of one of their tasks (``{"ray-gpu": {"cpus": 1, "gpus": 1}}``) when tasks of different shapes
    use different pools (empty: ``pool`` is the one queue); ``local_pool_dir``: the local Ray pool's state dir
    (``actuator='local'``; default ``$MLK8S_LOCAL_RAY_POOL``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    groups: tuple[WorkerGroupSpec, ...] = Field(min_length=1)
    actuator: ActuatorMode
    ray_address: str | None = None
    ray_conn_id: str = "ray_default"
    pool: str = Field("ray", min_length=1)
    queue_pools: dict[str, ResourceDemand] = Field(default_factory=dict)
    airflow_api_conn_id: str = "airflow_api_default"
    kubernetes_conn_id: str = "kubernetes_default"
    raycluster_name: str | None = None
    namespace: str | None = None
    local_pool_dir: str | None = None
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    prewarm_dag_ids: tuple[str, ...] = ()
    group_label: str = GROUP_LABEL
    interval_s: float = Field(15.0, gt=0, allow_inf_nan=False)
    history_length: int = Field(288, ge=1)

    @field_validator("actuator", mode="before")
    @classmethod
    def _known_actuator(cls, value: Any) -> ActuatorMode:
        return ActuatorMode.parse(str(value))

    @field_validator("ray_address")
    @classmethod
    def _explicit_address(cls, value: str | None) -> str | None:
        return None if not value else check_address(value)

    @model_validator(mode="after")
    def _kuberay_needs_a_cluster(self) -> RayPoolSettings:
        if self.actuator is not ActuatorMode.LOCAL and not (self.raycluster_name and self.namespace):
            raise ValueError(
                f"actuator={self.actuator.value!r} needs raycluster_name and namespace (the RayCluster to resize)"
            )
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> RayPoolSettings:
        """Validated settings, or a :class:`ValueError` naming each bad argument and its fix."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            errors = exc.errors()
            # A bad group also makes the tuple of good ones come out empty: report the group, not "empty".
            if any(tuple(e["loc"])[:1] == ("groups",) and len(e["loc"]) > 1 for e in errors):
                errors = [e for e in errors if tuple(e["loc"]) != ("groups",)]
            raise ValueError("; ".join(_explain(error) for error in errors)) from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _where(loc: tuple[int | str, ...]) -> str:
    """``groups[0].cpu``, ``queue_pools['ray-gpu']``: the argument as the caller wrote it."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int) or (i == 1 and loc[0] == "queue_pools"):
            parts.append(f"[{part!r}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _explain(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``where=value: what is wrong; how to fix it``."""
    loc = tuple(error.get("loc", ()))
    where = _where(loc) or "settings"
    kind, message = error.get("type", ""), str(error.get("msg", ""))
    message = message.removeprefix("Value error, ")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        shape = _SHAPES.get(str(loc[0])) if len(loc) > 1 else None
        names = [f.name for f in dataclasses.fields(shape)] if shape else list(RayPoolSettings.model_fields)
        return f"{where}: unknown key; allowed keys are {', '.join(names)}"
    if kind == "too_short" and loc == ("groups",):
        return f"groups is empty; pass one dict per Ray worker group, e.g. {EXAMPLE_GROUP}"
    if kind == "value_error":  # our own checks: the message names the field and the fix already
        return message if not loc or str(loc[0]) in ("actuator", "ray_address") else f"{where}: {message}"
    return f"{where}={error.get('input')!r}: {message}"


def worker_groups_schema() -> dict[str, Any]:
    """The JSON schema of the ``groups`` argument, from the one definition of a worker group (for DAG Params)."""
    item = TypeAdapter(WorkerGroupSpec).json_schema()
    item.pop("description", None)
    item.pop("title", None)
    for prop in item.get("properties", {}).values():
        prop.pop("title", None)
    # pydantic refuses unknown keys of a dataclass (above); the form says so too.
    item["additionalProperties"] = False
    return {"type": "array", "minItems": 1, "items": item}
