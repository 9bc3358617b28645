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
