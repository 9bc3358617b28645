"""Kubernetes' $(VAR) references: the kubelet's expansion, and the escaping that makes any value literal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlk8s_airflow.backends.var_refs import expand_var_refs, literal_var_ref, literal_var_refs

ENV = {"RAY_AUTH_TOKEN": "s3cret", "A": "1"}


def test_expansion_follows_the_kubelet() -> None:
    assert expand_var_refs("$(A)-$(MISSING)-$$(A)-$$$(A)-$", ENV) == "1-$(MISSING)-$(A)-$1-$"


def test_an_escaped_token_reference_stays_literal() -> None:
    assert expand_var_refs(literal_var_ref("/$(RAY_AUTH_TOKEN)"), ENV) == "/$(RAY_AUTH_TOKEN)"
    assert literal_var_refs(None) is None


@given(st.text(alphabet=st.sampled_from(list("$()AR_xy-.")) | st.characters(), max_size=40))
def test_any_escaped_value_expands_back_to_itself(value: str) -> None:
    assert expand_var_refs(literal_var_ref(value), ENV) == value
