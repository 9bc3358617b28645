"""compat: every private member mlk8s relies on still exists in the installed Ray, Airflow and provider, and no
other module reaches into a private path directly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlk8s import compat

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", sorted(compat.MEMBERS))
def test_every_listed_member_resolves(name: str) -> None:
    assert compat.get(name) is not None


def test_a_missing_member_fails_naming_it() -> None:
    compat.MEMBERS["test.gone"] = compat.Member("json:no_such_member", "a test entry")
    try:
        with pytest.raises(compat.CompatError, match=r"json:no_such_member \(test.gone: a test entry\)"):
            compat.get("test.gone")
    finally:
        del compat.MEMBERS["test.gone"]


PRIVATE_IMPORT = re.compile(
    r"^\s*(from|import)\s+(ray\._|ray\.core\.generated|ray\.autoscaler\.v2|airflow\.models|"
    r"airflow\.api_fastapi)",
    re.M,
)


def test_no_product_module_imports_a_private_path_directly() -> None:
    offenders = []
    for root in ("include/mlk8s", "plugins/mlk8s_airflow", "dags"):
        for path in (REPO / root).rglob("*.py"):
            if path.name == "compat.py":
                continue
            if PRIVATE_IMPORT.search(path.read_text()):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], f"use mlk8s.compat.get(...) instead of importing private paths in {offenders}"
