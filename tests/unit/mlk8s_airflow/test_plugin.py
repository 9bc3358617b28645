"""The plugin loads through the package's ``airflow.plugins`` entry point, with no plugins folder (issue 10,
defect 5): that is how the image, which installs the package, gets the Ray pool page and the extra links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.airflow


def test_airflows_plugins_manager_finds_the_plugin_with_an_empty_plugins_folder(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    plugins, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("[{") :])
    ours = [p for p in plugins if p["name"] == "mlk8s"]
    assert len(ours) == 1, plugins
    assert "EntryPoint(name='mlk8s', value='mlk8s_airflow.plugin:Mlk8sPlugin'" in ours[0]["source"]
    assert ours[0]["external_views"][0]["name"] == "Ray pool"
    assert ours[0]["operator_extra_links"]


def test_the_package_declares_its_dependencies_like_a_provider() -> None:
    """The pod side installs without Airflow; the airflow extra adds the Airflow side; every pin of
    requirements.txt is covered by one of them (so `pip install mlk8s[airflow]` is a working install)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {d.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    extra = {
        d.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        for d in project["optional-dependencies"]["airflow"]
    }
    assert not any(name.startswith("apache-airflow") for name in base)
    assert {"apache-airflow", "apache-airflow-providers-cncf-kubernetes"} <= extra
    pinned = {
        line.split("==")[0].split("[")[0].split(">")[0].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert pinned <= base | extra, f"pinned but not declared: {pinned - base - extra}"
    assert project["entry-points"]["airflow.plugins"] == {"mlk8s": "mlk8s_airflow.plugin:Mlk8sPlugin"}
