"""Every DAG file imports cleanly, fast, with no heavy package loaded, and declares tags and retries.

Each file is parsed in a fresh interpreter so that what it imports is visible in ``sys.modules`` and nothing
imported by other tests hides a heavy import.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = ("torch", "ray", "sklearn", "transformers", "sentence_transformers", "pandas")

PROBE = r"""
import json, sys, importlib.util
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
dags = {
    dag_id: {
        "tags": sorted(dag.tags or []),
        "tasks": {t.task_id: {"retries": t.retries, "upstream": sorted(t.upstream_task_ids)} for t in dag.tasks},
        "params": {
            k: {"schema": p.schema, "description": p.description, "default": p.value} for k, p in dag.params.items()
        },
    }
    for dag_id, dag in bag.dags.items()
}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "heavy": heavy, "dags": dags}))
"""


@functools.cache
def parse(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=DAG_FILES, ids=[p.name for p in DAG_FILES])
def parsed(request: pytest.FixtureRequest) -> dict:
    return parse(request.param)


def test_there_are_dags() -> None:
    assert DAG_FILES, "dags/ holds no DAG files"


def test_imports_without_errors(parsed: dict) -> None:
    assert parsed["errors"] == {}
    assert parsed["dags"], "the file defines no DAG"


def test_no_heavy_imports_at_parse_time(parsed: dict) -> None:
    assert parsed["heavy"] == []


def test_tags_and_retries_are_set(parsed: dict) -> None:
    for dag_id, dag in parsed["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        for task_id, task in dag["tasks"].items():
            assert task["retries"] >= 1, f"{dag_id}.{task_id} has no retries"


#: DAGs our users trigger from the form; their Params are held to what the form needs.
USER_TRIGGERED = ("nightly_retrain", "preprocess_on_demand")


@pytest.fixture(scope="module")
def user_dags() -> dict[str, dict]:
    found = {}
    for path in DAG_FILES:
        found.update({k: v for k, v in parse(path)["dags"].items() if k in USER_TRIGGERED})
    assert sorted(found) == sorted(USER_TRIGGERED)
    return found


def test_every_param_of_a_user_triggered_dag_says_what_it_is(user_dags: dict[str, dict]) -> None:
    for dag_id, dag in user_dags.items():
        for name, param in dag["params"].items():
            assert param["description"], f"{dag_id}: Param {name!r} has no description for the trigger form"


def test_no_number_param_can_be_clamped_by_the_trigger_form(user_dags: dict[str, dict]) -> None:
    # The form's NumberInput clamps to a top-level minimum/maximum; bounds go in allOf (dag_params.number_param).
    for dag_id, dag in user_dags.items():
        for name, param in dag["params"].items():
            clampable = {"minimum", "maximum"} & set(param["schema"])
            assert not clampable, f"{dag_id}: Param {name!r} has top-level {sorted(clampable)}; use number_param"


def test_the_trigger_form_accepts_every_default_as_it_is(user_dags: dict[str, dict]) -> None:
    # The form disables its Trigger button while a field whose type excludes null is empty ("" or null).
    for dag_id, dag in user_dags.items():
        for name, param in dag["params"].items():
            types = param["schema"].get("type")
            required = bool(types) and "null" not in (types if isinstance(types, list) else [types])
            empty = param["default"] in (None, "")
            assert not (required and empty), f"{dag_id}: Param {name!r} is empty by default: give it type [null, ...]"


def test_unknown_conf_keys_are_checked_before_any_other_task(user_dags: dict[str, dict]) -> None:
    for dag_id, dag in user_dags.items():
        roots = [task_id for task_id, task in dag["tasks"].items() if not task["upstream"]]
        assert roots == ["check_params"], f"{dag_id}: tasks {roots} start without the conf check"
