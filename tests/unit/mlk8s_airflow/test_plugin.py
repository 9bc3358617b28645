"""The plugin, loaded the way every Airflow process loads it (the plugins folder): it brings the extra links and
the pages, and nothing heavy: no KubernetesPodOperator, kubernetes client, torch, Ray or the pages' app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"

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


def test_the_plugin_loads_its_links_and_pages_and_nothing_heavy(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS)}
    out = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded["plugins"] == ["mlk8s"] and loaded["errors"] == {}
    assert loaded["links"] == ["RayDashboardLink", "TrainingPageLink", "PreprocessingPageLink"]
    assert loaded["views"] == ["mlk8s-ray-pool", "mlk8s-tasks"] and loaded["apps"] == ["/mlk8s"]
    heavy = [m for m in loaded["new"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
    # The folder loader imports only plugin.py: no second copy of a package module under a bare name.
    stems = {p.stem for p in (PLUGINS / "mlk8s_airflow").rglob("*.py")}
    assert [m for m in loaded["new"] if m in stems] == ["plugin"]
