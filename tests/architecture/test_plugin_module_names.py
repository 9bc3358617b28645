"""Airflow's plugins-folder loader imports every .py file under plugins/ as a top-level module named by its file
stem, so ``plugins/mlk8s_airflow/hooks/ray.py`` would become ``sys.modules["ray"]`` and break Ray in that
process. No file there may be named like an installed top-level module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_no_plugin_file_shadows_an_installed_module() -> None:
    shadowing = []
    for path in PLUGINS.rglob("*.py"):
        stem = path.stem
        if stem == "__init__":
            continue
        spec = importlib.util.find_spec(stem) if stem.isidentifier() else None
        if spec is not None and spec.origin and not spec.origin.startswith(str(PLUGINS)):
            shadowing.append(f"{path.relative_to(PLUGINS)} shadows {stem} ({spec.origin})")
    assert shadowing == []
