"""The Priority admission plugin: a pod's ``priorityClassName`` resolved to ``priority`` at creation.

A pod naming a PriorityClass that does not exist is refused (``no PriorityClass with name X was found``);
one naming none gets the ``globalDefault`` class's value, else 0. ``preemptionPolicy`` comes from the class.
The scheduler's use of priority (preempting lower pods for room) is not modelled: room is never short here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class PriorityClassMissing(Exception):
    pass


def admit(pod: dict[str, Any], classes: Iterable[Mapping[str, Any]]) -> None:
    spec = pod["spec"]
    by_name = {c["metadata"]["name"]: c for c in classes}
    wanted = spec.get("priorityClassName")
    if wanted:
        chosen = by_name.get(wanted)
        if chosen is None:
            raise PriorityClassMissing(
                f'pods "{pod["metadata"]["name"]}" is forbidden: no PriorityClass with name {wanted} was found'
            )
    else:
        chosen = next((c for c in by_name.values() if c.get("globalDefault")), None)
        if chosen is not None:
            spec["priorityClassName"] = chosen["metadata"]["name"]
    spec["priority"] = int(chosen["value"]) if chosen is not None else 0
    spec["preemptionPolicy"] = (chosen or {}).get("preemptionPolicy", "PreemptLowerPriority")
