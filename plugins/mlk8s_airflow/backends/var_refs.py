"""Kubernetes' ``$(VAR)`` references in a container's command, args and env values, as the kubelet reads them.

The kubelet replaces ``$(NAME)`` by the container's variable ``NAME`` (when it is defined), turns ``$$`` into
``$`` and leaves everything else alone. The local backend expands exactly so (``expand_var_refs``), and the
operators send rendered user values escaped (``literal_var_refs``), so neither backend ever turns a Param
such as ``/$(RAY_AUTH_TOKEN)`` into the token. Written here rather than taken from a library because the
kubernetes client has no such function (the kubelet's is Go: ``third_party/forked/golang/expansion``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand_var_refs(value: str, env: Mapping[str, str]) -> str:
    """The kubelet's expansion: known names are replaced, ``$$`` escapes, unknown refs stay as they are."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(repl, value)


def literal_var_ref(value: str) -> str:
    """``value`` escaped so that ``expand_var_refs`` (and the kubelet) give back exactly ``value``."""
    return value.replace("$", "$$")


def literal_var_refs(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else [literal_var_ref(v) for v in values]
