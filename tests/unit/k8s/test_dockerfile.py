"""The Dockerfile agrees with the pins and the package layout (no Docker engine here: checked, not built)."""

from __future__ import annotations

import re
import shlex
from fnmatch import fnmatch

from tests.unit.k8s.manifests import REPO, requirement_pin

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            word, _, args = current.strip().partition(" ")
            out.append((word.upper(), args.strip()))
            current = ""
    return out


def copy_sources() -> list[str]:
    sources = []
    for word, args in instructions():
        if word == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def test_base_image_is_the_pinned_airflow_on_python_311() -> None:
    froms = [args for word, args in instructions() if word == "FROM"]
    assert froms == [f"apache/airflow:{requirement_pin('apache-airflow')}-python3.11"]
    assert 'requires-python = ">=3.11,<3.12"' in (REPO / "pyproject.toml").read_text()


def test_image_ends_as_the_unprivileged_airflow_user() -> None:
    users = [args for word, args in instructions() if word == "USER"]
    assert users, "the Dockerfile never sets USER"
    assert users[-1] == "airflow"
    assert all(u not in ("root", "0", "0:0") for u in users)


def test_torch_variant_defaults_to_cpu_and_installs_use_the_lock() -> None:
    args = dict(a.split("=", 1) for word, a in instructions() if word == "ARG" and "=" in a)
    assert args["TORCH_VARIANT"] == "cpu"
    runs = " ".join(a for word, a in instructions() if word == "RUN")
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in runs
    assert "-r /opt/mlk8s/requirements.txt -c /opt/mlk8s/constraints.txt" in runs
    assert re.search(r"pip install [^&]*--no-deps /opt/mlk8s", runs)


def test_image_copies_what_the_package_needs() -> None:
    sources = {s.rstrip("/") for s in copy_sources()}
    pyproject = (REPO / "pyproject.toml").read_text()
    needed = {"requirements.txt", "constraints.txt", "pyproject.toml", "dags"}
    needed |= set(re.findall(r"where = \[([^\]]*)\]", pyproject)[0].replace('"', "").replace(" ", "").split(","))
    readme = re.search(r'^readme = "([^"]+)"', pyproject, re.M)
    if readme:
        needed.add(readme.group(1))  # setuptools refuses to build without the readme it names
    assert needed <= sources, f"not copied: {needed - sources}"
    missing = [s for s in sources if not (REPO / s).exists()]
    assert missing == [], f"COPY sources missing from the repository (the image build would fail): {missing}"


def test_dockerignore_keeps_copied_paths_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copy_sources():
        name = source.rstrip("/")
        assert not any(fnmatch(name, p) for p in patterns), f"{name} is copied but .dockerignore drops it"
    for local in (".venv", ".airflow", ".git", "tests"):
        assert any(fnmatch(local, p) for p in patterns), f".dockerignore lets {local} into the build context"
