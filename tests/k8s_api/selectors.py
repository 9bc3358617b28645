"""Label and field selectors with the API server's syntax.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x,y)``, comma-joined
(all must hold). Field selectors: ``path=value``, ``path==value``, ``path!=value`` on dotted paths such as
``metadata.name``, ``status.phase``, ``spec.nodeName`` or ``involvedObject.name``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    """A selector the API server would refuse (400)."""


def _split_top_level(expr: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


_SET = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ = re.compile(r"^([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=()]*)$")
_KEY = re.compile(r"^(!?)([^\s!=()]+)$")


Requirement = tuple[str, str, frozenset[str]]  # key, operator, values


def _holds(req: Requirement, labels: Mapping[str, str]) -> bool:
    key, op, values = req
    value = labels.get(key)
    if op == "in":
        return value in values
    if op == "notin":
        return value not in values
    if op == "=":
        return value is not None and value in values
    if op == "!=":
        return value not in values
    if op == "exists":
        return key in labels
    return key not in labels  # "!": does not exist


def parse_label_selector(expr: str | None) -> Callable[[Mapping[str, str]], bool]:
    requirements: list[Requirement] = []
    for term in _split_top_level(expr or ""):
        if m := _SET.match(term):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append((m.group(1), m.group(2), values))
        elif m := _EQ.match(term):
            op = "!=" if m.group(2) == "!=" else "="
            requirements.append((m.group(1), op, frozenset({m.group(3)})))
        elif m := _KEY.match(term):
            requirements.append((m.group(2), "!" if m.group(1) else "exists", frozenset()))
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")

    def matches(labels: Mapping[str, str]) -> bool:
        return all(_holds(req, labels) for req in requirements)

    return matches


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    return "" if node is None else str(node)


def parse_field_selector(expr: str | None) -> Predicate:
    requirements: list[tuple[str, bool, str]] = []  # path, equal?, value
    for term in _split_top_level(expr or ""):
        m = _EQ.match(term)
        if not m:
            raise SelectorError(f"invalid field selector: {term!r}")
        requirements.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def matches(obj: dict[str, Any]) -> bool:
        return all((_lookup(obj, path) == value) == equal for path, equal, value in requirements)

    return matches


def match_label_selector_object(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` object (``matchLabels`` + ``matchExpressions``), as PDBs carry.

    An empty selector matches everything, as it does for a policy/v1 PodDisruptionBudget.
    """
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
