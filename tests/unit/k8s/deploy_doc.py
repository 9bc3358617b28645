"""What docs/deploy.md tells a user to create: Secrets (name, namespace, keys), node labels and taints, and
the files it applies. Read from the page's bash blocks, so the tests check the commands as written."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from tests.unit.k8s.manifests import REPO

DEPLOY_DOC = REPO / "docs" / "deploy.md"


@dataclass
class DeployDoc:
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (namespace, name) -> key: value
    node_labels: set[tuple[str, str]] = field(default_factory=set)
    taints: set[tuple[str, str, str]] = field(default_factory=set)  # (key, value, effect)
    applied_files: list[str] = field(default_factory=list)
    values_files: list[str] = field(default_factory=list)


def commands(text: str) -> list[list[str]]:
    """Each shell command of the page's bash blocks, split as the shell would (continuations joined)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(shlex.split(line))
    return out


def _option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
    return None


def parse(text: str | None = None) -> DeployDoc:
    doc = DeployDoc()
    for argv in commands(DEPLOY_DOC.read_text() if text is None else text):
        if argv[:1] == ["kubectl"] and "secret" in argv and "generic" in argv:
            name = argv[argv.index("generic") + 1]
            keys = dict(
                a.removeprefix("--from-literal=").split("=", 1) for a in argv if a.startswith("--from-literal=")
            )
            doc.secrets[(_option(argv, "-n", "--namespace") or "default", name)] = keys
        elif argv[:3] == ["kubectl", "label", "nodes"]:
            doc.node_labels |= {tuple(a.split("=", 1)) for a in argv[4:] if "=" in a}  # type: ignore[misc]
        elif argv[:3] == ["kubectl", "taint", "nodes"]:
            for spec in argv[4:]:
                key_value, _, effect = spec.partition(":")
                key, _, value = key_value.partition("=")
                doc.taints.add((key, value, effect))
        if argv[:2] == ["kubectl", "apply"]:
            doc.applied_files += [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
        if argv[:1] == ["helm"]:
            doc.values_files += [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
    return doc
