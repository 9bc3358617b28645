"""How our DAGs' Params refuse bad input: number bounds the trigger form cannot clamp away, and unknown keys.

Two gaps in Airflow 3.3, found by reading it:

- The trigger form renders an ``integer``/``number`` Param as Chakra's NumberInput with ``min``/``max`` taken
  from the schema's ``minimum``/``maximum``, and that input clamps on blur: ``-1`` typed into a field with
  ``minimum: 1`` is sent as ``1`` without a word. :func:`number_param` keeps the bounds in an ``allOf``
  (the form reads only the top-level keywords; jsonschema applies every ``allOf`` member), so the value
  reaches the server as typed and is refused there with the field named. The bounds go into the description.
- A run's ``conf`` keys that no Param declares are added as schema-less Params when the run is created
  (``SerializedParamsDict.deep_merge``), so a typo (``epoch`` for ``epochs``) is accepted silently and the
  default is used. :class:`ConfCheckOperator`, the first task of a DAG, fails the run at its first moment
  with the unknown key, the closest declared one and the list of declared keys; no other task starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Param
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

CONF_CHECK_TASK_ID = "check_params"


def _bound_text(minimum: float | None, maximum: float | None, exclusive_minimum: float | None) -> str:
    low = f"> {exclusive_minimum:g}" if exclusive_minimum is not None else None
    if minimum is not None:
        low = f">= {minimum:g}"
    high = f"<= {maximum:g}" if maximum is not None else None
    return ", ".join(part for part in (low, high) if part)


def number_param(
    default: float,
    *,
    description: str,
    integer: bool = True,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
) -> Param:
    """A number Param whose bounds are enforced by the server and never clamped by the trigger form."""
    bounds: list[dict[str, float]] = []
    if minimum is not None:
        bounds.append({"minimum": minimum})
    if exclusive_minimum is not None:
        bounds.append({"exclusiveMinimum": exclusive_minimum})
    if maximum is not None:
        bounds.append({"maximum": maximum})
    text = _bound_text(minimum, maximum, exclusive_minimum)
    schema: dict[str, Any] = {"type": "integer" if integer else "number"}
    if bounds:
        schema["allOf"] = bounds
    param = Param(default, description=f"{description} ({text})" if text else description, **schema)
    param.resolve()  # a default outside its own bounds is the DAG author's error: refuse it at parse time
    return param


def unknown_conf_keys(conf: Mapping[str, Any] | None, declared: Iterable[str]) -> list[str]:
    """The keys of a run's conf that no Param declares, sorted."""
    known = set(declared)
    return sorted(str(key) for key in (conf or {}) if key not in known)


def unknown_keys_message(dag_id: str, unknown: list[str], declared: Iterable[str]) -> str:
    known = sorted(declared)
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return (
        f"{dag_id}: unknown Param key(s) in the run's conf: {', '.join(parts)}. This DAG declares "
        f"{', '.join(known) or 'no Params'}; remove or rename the key(s) and trigger again."
    )


class ConfCheckOperator(BaseOperator):
    """Fails the run when its conf holds a key the DAG declares no Param for; the DAG's first task.

    It fails with ``AirflowFailException``: a retry cannot fix a run's conf, so none is spent.
    """

    ui_color = "#f0e4ff"

    def __init__(self, *, task_id: str = CONF_CHECK_TASK_ID, **kwargs: Any) -> None:
        super().__init__(task_id=task_id, **kwargs)

    def execute(self, context: Context) -> None:
        dag_run = context["dag_run"]
        conf = dict(getattr(dag_run, "conf", None) or {})
        declared = list(self.dag.params.keys()) if self.dag is not None else []
        unknown = unknown_conf_keys(conf, declared)
        if unknown:
            raise AirflowFailException(unknown_keys_message(self.dag_id, unknown, declared))
        self.log.info("mlk8s: conf keys %s are all declared Params", sorted(conf) or "(none)")
