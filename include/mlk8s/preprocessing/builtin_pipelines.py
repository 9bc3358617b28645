"""The named pipelines a DAG offers in its trigger form, and how a choice there becomes a pipeline spec.

Names only at import (no pyarrow), so a DAG file can list them in a Param's ``enum`` at parse time; the spec
is composed, and checked by ``mlk8s.preprocessing.spec.parse_spec``, when the run starts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: name -> the steps before embedding. ``spec`` means: take the user's own spec as it is.
STEPS: dict[str, list[dict[str, Any]]] = {
    "documents": [{"use": "html_to_text"}, {"use": "clean_text"}, {"use": "text_features"}, {"use": "non_empty_text"}],
    "text_only": [{"use": "html_to_text"}, {"use": "clean_text"}, {"use": "non_empty_text"}],
}
SPEC = "spec"
NAMES: tuple[str, ...] = (*STEPS, SPEC)
EMBED_STEP = {"use": "embed"}
SAMPLE_STEP = "mlk8s.preprocessing.sampling.sample_rows"


def compose(
    name: str,
    *,
    embeddings: bool,
    sample_fraction: float,
    seed: int = 0,
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The pipeline spec for a trigger form's choices; raises ``SpecError`` naming the field that is wrong."""
    from mlk8s.preprocessing.errors import SpecError
    from mlk8s.preprocessing.spec import parse_spec

    if name not in NAMES:
        raise SpecError(f"pipeline: {name!r} is not one of {', '.join(NAMES)}")
    if name == SPEC:
        if not spec:
            raise SpecError("pipeline_spec: pipeline is 'spec' but pipeline_spec is empty; give {steps: [...]}")
        composed = copy.deepcopy(dict(spec))
    else:
        steps = copy.deepcopy(STEPS[name]) + ([dict(EMBED_STEP)] if embeddings else [])
        composed = {"version": 1, "steps": steps}
    if sample_fraction < 1:
        sample = {"use": SAMPLE_STEP, "kind": "filter", "args": {"fraction": sample_fraction, "seed": seed}}
        composed["steps"] = [sample, *list(composed.get("steps") or [])]
    parse_spec(composed, source="pipeline_spec" if name == SPEC else f"pipeline {name!r}")
    return composed
