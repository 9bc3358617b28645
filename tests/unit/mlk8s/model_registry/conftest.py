"""Real trained models for the registry tests: tiny classifiers on scikit-learn's bundled digits, trained once
per session by ``python -m mlk8s.training`` in one subprocess (the trainer sets process-wide torch state)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: name -> training flags. "weak" and "strong" share an architecture; "wide" has other layer shapes.
MODELS = {
    "weak": ["--epochs", "1", "--batch-size", "256", "--task-option", "hidden=8"],
    "strong": ["--epochs", "4", "--batch-size", "32", "--task-option", "hidden=8"],
    "wide": ["--epochs", "1", "--batch-size", "256", "--task-option", "hidden=16"],
}
COMMON = ["--task-option", "layers=1", "--task-option", "shifts=0", "--log-level", "WARNING"]

TRAIN_ALL = """
import json, sys
from mlk8s.training.cli import main
for name, flags in json.loads(sys.argv[1]).items():
    code = main(["--checkpoint-uri", f"{sys.argv[2]}/ckpt-{name}", "--output-uri", f"{sys.argv[2]}/{name}", *flags])
    assert code == 0, (name, code)
"""


def options(name: str) -> list[str]:
    """The --task-option flags ``name`` was trained with, as the DAG passes them to evaluate and publish."""
    flags = MODELS[name] + COMMON
    return [arg for i, arg in enumerate(flags) if i > 0 and flags[i - 1] == "--task-option"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    env = {**os.environ, "MLK8S_XCOM_DIR": str(root / "xcom")}
    flags = {name: [*extra, *COMMON] for name, extra in MODELS.items()}
    subprocess.run([sys.executable, "-c", TRAIN_ALL, json.dumps(flags), str(root)], check=True, env=env)
    return {name: root / name for name in MODELS}
