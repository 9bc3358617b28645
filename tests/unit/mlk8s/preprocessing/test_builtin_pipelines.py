"""The trigger form's pipeline choices become checked specs; the default choice is the default pipeline."""

from __future__ import annotations

import pytest

from mlk8s.preprocessing.builtin_pipelines import NAMES, compose
from mlk8s.preprocessing.spec import DEFAULT_SPEC, SpecError, parse_spec


def test_documents_with_embeddings_is_the_default_pipeline() -> None:
    assert compose("documents", embeddings=True, sample_fraction=1.0) == DEFAULT_SPEC


def test_every_name_but_spec_composes_with_and_without_embeddings() -> None:
    for name in NAMES:
        if name == "spec":
            continue
        for embeddings in (True, False):
            spec = compose(name, embeddings=embeddings, sample_fraction=1.0)
            uses = [step["use"] for step in spec["steps"]]
            assert ("embed" in uses) is embeddings
            parse_spec(spec)


def test_a_sample_fraction_below_one_puts_the_sample_filter_first() -> None:
    spec = compose("text_only", embeddings=False, sample_fraction=0.25, seed=3)
    assert spec["steps"][0] == {
        "use": "mlk8s.preprocessing.sampling.sample_rows",
        "kind": "filter",
        "args": {"fraction": 0.25, "seed": 3},
    }
    assert parse_spec(spec).steps[0].kind == "filter"


def test_a_user_spec_is_taken_as_given_and_checked() -> None:
    assert compose("spec", embeddings=True, sample_fraction=1.0, spec={"steps": ["clean_text"]}) == {
        "steps": ["clean_text"]
    }
    with pytest.raises(SpecError, match=r"steps\[0\].use: unknown transform 'nope'"):
        compose("spec", embeddings=False, sample_fraction=1.0, spec={"steps": [{"use": "nope"}]})
    with pytest.raises(SpecError, match="pipeline_spec: pipeline is 'spec' but pipeline_spec is empty"):
        compose("spec", embeddings=False, sample_fraction=1.0, spec={})
    with pytest.raises(SpecError, match="is not one of"):
        compose("fancy", embeddings=False, sample_fraction=1.0)
