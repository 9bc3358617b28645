"""Test-wide set-up: an isolated Airflow home on SQLite, and the local backend as the deployment default.

Airflow reads its configuration once per process, at import, so the environment is set here, before any test
module imports airflow. Tests that need a different Airflow configuration run Airflow in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="mlk8s-test-airflow-"))

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
# dag.test() runs only DAGs that live in a bundle: the project's dags/ and the tests' own fixture DAGs.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(REPO / "dags"), "refresh_interval": 0},
        },
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(REPO / "tests" / "fixture_dags"), "refresh_interval": 0},
        },
    ]
)
# The plugin loads through the package's airflow.plugins entry point, as in the image: no plugins folder (a
# folder holding it too would register it twice).
(_HOME / "plugins").mkdir()
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(_HOME / "plugins")
os.environ["AIRFLOW__MLK8S__BACKEND"] = "local"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("MLK8S_LOCAL_SCRATCH", str(_HOME / "pods"))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A migrated SQLite metadata DB for ``dag.test()`` (created once per session, in its own process)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=dict(os.environ),
    )
    yield _HOME


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _root_logging_as_it_was() -> Iterator[None]:
    """A CLI's ``main()`` called in process runs ``logging.basicConfig``, which binds a handler to that test's
    captured stderr; left on the root logger, it writes to a closed stream in every later test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


# ``pytest -n N --dist loadgroup`` (make test): tests that share a costly session fixture run in one xdist worker:
# the cluster-in-a-box, the UI pages' fixture runs, the model registry's trained models. The process kubelet's
# own tests (tests/k8s_api) join the box's group: with a box and a second kubelet running at once, KPO's exec
# into an XCom sidecar hung (the command it writes never reached the container's shell), and the tier is
# trusted only as it has been run, one kubelet at a time. Every other test file is a group of its own, so a
# module fixture (``make up``'s stack, say) starts once. The groups are given by path here,
# not by ``xdist_group`` marks: xdist 3.8 applies those by rewriting ``item._nodeid``, which pytest 9.2 no
# longer reads, so the marks would be silently ignored.
_SHARED_GROUPS = {
    "tests/cluster/": "pod-runtime",
    "tests/k8s_api/": "pod-runtime",
    "tests/unit/mlk8s_airflow/ui/": "ui-runs",
    "tests/unit/mlk8s/model_registry/": "model-registry",
}


def xdist_group(nodeid: str) -> str:
    """The worker group of a test: a shared-fixture group, else its file."""
    return (
        next((group for prefix, group in _SHARED_GROUPS.items() if nodeid.startswith(prefix)), None)
        or (nodeid.split("::", 1)[0])
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return ByGroup(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand this worker's contract tally to the controller, which prints the sum."""
    from tests import tally

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["mlk8s_tally"] = tally.export()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    from tests import tally

    tally.merge(getattr(node, "workeroutput", {}).get("mlk8s_tally", {}))


def pytest_terminal_summary(terminalreporter: object) -> None:
    from tests.tally import terminal_summary

    terminal_summary(terminalreporter)
