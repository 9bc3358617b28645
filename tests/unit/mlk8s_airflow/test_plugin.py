"""The plugin loads through the package's ``airflow.plugins`` entry point, with no plugins folder (issue 10,
defect 5): that is how the image, which installs the package, gets the pages and the extra links. Loaded the way
every Airflow process loads it, it brings nothing heavy (no KubernetesPodOperator, kubernetes client, torch, Ray
or the pages' app), also where the plugins folder is this repository's ``plugins/`` (make up, the demo)."""

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

PLUGINS = REPO / "plugins"

LOAD = """
import json, sys
from airflow import plugins_manager
before = set(sys.modules)
plugins, errors = plugins_manager._get_plugins()
new = sorted(set(sys.modules) - before)
mlk8s = [p for p in plugins if p.name == "mlk8s"]
print(json.dumps({
    "plugins": [p.name for p in plugins],
    "errors": errors,
    "new": new,
    "links": [type(l).__name__ for l in mlk8s[0].operator_extra_links] if mlk8s else [],
    "views": [v["url_route"] for v in mlk8s[0].external_views] if mlk8s else [],
    "apps": [a["url_prefix"] for a in mlk8s[0].fastapi_apps] if mlk8s else [],
}))
"""

HEAVY = (
    "torch",
    "ray",
    "kubernetes",
    "airflow.providers.cncf.kubernetes",
    "mlk8s_airflow.operators",
    "mlk8s_airflow.ui.app",
    "fastapi",
)


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
    assert [v["name"] for v in ours[0]["external_views"]] == ["Ray pool", "ML tasks"]
    assert ours[0]["operator_extra_links"]


@pytest.mark.parametrize("folder", ["empty", "repo"])
def test_the_plugin_loads_once_with_its_links_and_pages_and_nothing_heavy(tmp_path: Path, folder: str) -> None:
    plugins_folder = PLUGINS if folder == "repo" else tmp_path / "plugins"
    plugins_folder.mkdir(exist_ok=True)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder)}
    # Run outside the checkout: a build's mlk8s.egg-info there would make the entry point appear twice.
    run = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    out = run.stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded["plugins"] == ["mlk8s"] and loaded["errors"] == {}
    assert loaded["links"] == ["RayDashboardLink", "TrainingPageLink", "PreprocessingPageLink"]
    assert loaded["views"] == ["mlk8s-ray-pool", "mlk8s-tasks"] and loaded["apps"] == ["/mlk8s"]
    heavy = [m for m in loaded["new"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
    # The folder loader imports none of the package's files as bare top-level modules (second copies).
    stems = {p.stem for p in (PLUGINS / "mlk8s_airflow").rglob("*.py")}
    assert [m for m in loaded["new"] if m in stems] == []


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
