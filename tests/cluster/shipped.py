"""What the project ships for Kubernetes, read the way a user follows it: manifests and the documented steps.

The cluster tier never writes its own copy of a deployment. It runs the shell steps of the deployment guide
(``docs/deploy.md`` when it exists, else the "Secrets" and "Install" sections of ``docs/kubernetes.md``)
against the mock API server, so a Secret name, a key or a file that the docs get wrong breaks the tier:

* ``NAME=$(openssl rand -hex N)`` / ``-base64 N`` assign random values (a variable holding ``-hex 32`` is this
  test process's Ray token, :func:`mlk8s.ray_auth.process_token`, because Ray caches one token per process and
  in-process clients of local Ray clusters and of this cluster must agree); ``for v in a b; do ... done``
  loops; ``$VAR``, ``"$VAR"`` and ``'...'`` as a shell reads them;
* ``kubectl create namespace``, ``kubectl apply -f FILE ...`` (``-n``), ``kubectl -n NS create secret generic
  NAME --from-literal=KEY=VALUE ...``;
* ``helm upgrade --install <release> <chart> -n NS -f VALUES``: ``kuberay/ray-cluster`` applies
  ``helm-values/raycluster.yaml`` (the RayCluster those values render to, checked by tests/unit/k8s);
  ``apache-airflow/airflow`` creates the chart's component ServiceAccounts named by the values
  (``workers.serviceAccount.name`` ..., else ``<release>-<component>``); other charts (the KubeRay operator) are
  played by the mock server itself;
* anything else (``gcloud``, ``kubectl label --dry-run``) is not a step the tier can take and is skipped.
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HELM_VALUES = REPO / "helm-values"
Obj = dict[str, Any]

#: The official chart's components that run Airflow code, and the values key of each one's ServiceAccount.
AIRFLOW_COMPONENTS = {
    "scheduler": "scheduler",
    "worker": "workers",
    "triggerer": "triggerer",
    "api-server": "apiServer",
    "dag-processor": "dagProcessor",
}


def load_manifests(path: Path) -> list[Obj]:
    """The Kubernetes objects of a YAML file (documents without ``apiVersion``/``kind`` are not objects)."""
    return [
        d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and "apiVersion" in d and "kind" in d
    ]


def airflow_service_accounts(values_path: Path, release: str = "airflow") -> dict[str, str]:
    """Component -> ServiceAccount name the official chart creates with these values."""
    values = yaml.safe_load(values_path.read_text()) or {}
    names = {}
    for component, key in AIRFLOW_COMPONENTS.items():
        account = ((values.get(key) or {}).get("serviceAccount") or {}).get("name")
        names[component] = account or f"{release}-{component}"
    return names


@dataclass
class Step:
    argv: list[str]
    line: str


@dataclass
class DeploymentSteps:
    """The shell commands of a guide's ``bash`` blocks, expanded (loops unrolled, variables substituted)."""

    steps: list[Step] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_markdown(cls, text: str, ray_token: Callable[[], str]) -> DeploymentSteps:
        out = cls()
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
            out._run_block(block, ray_token)
        return out

    def _run_block(self, block: str, ray_token: Callable[[], str]) -> None:
        lines = _logical_lines(block)
        i = 0
        while i < len(lines):
            line = lines[i]
            words = _words(line)
            if words[:1] == ["for"] and words[-1:] == ["do"] and len(words) > 3 and words[2] == "in":
                body, i = _loop_body(lines, i + 1)
                for value in (w.rstrip(";") for w in words[3:-1]):
                    self.variables[words[1]] = value
                    for inner in body:
                        self._run_line(inner, ray_token)
                continue
            self._run_line(line, ray_token)
            i += 1

    def _run_line(self, line: str, ray_token: Callable[[], str]) -> None:
        assign = re.match(r"^(\w+)=(.*)$", line)
        if assign:
            self.variables[assign.group(1)] = self._value(assign.group(2), ray_token, assigned=True)
            return
        expanded = re.sub(r"\$\((openssl rand [^)]*)\)", lambda m: _random(m.group(1)), line)
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: self.variables.get(m.group(1), m.group(0)), expanded)
        try:
            argv = shlex.split(expanded, comments=True)
        except ValueError as exc:
            raise ValueError(f"cannot read the documented command {line!r}: {exc}") from exc
        if argv:
            self.steps.append(Step(argv, line))

    def _value(self, text: str, ray_token: Callable[[], str], assigned: bool) -> str:
        match = re.match(r"^\$\((openssl rand [^)]*)\)$", text.strip())
        if match:
            if assigned and match.group(1).split()[2:] == ["-hex", "32"]:
                return ray_token()
            return _random(match.group(1))
        return shlex.split(text)[0] if text.strip() else ""


def _logical_lines(block: str) -> list[str]:
    lines, current = [], ""
    for raw in block.splitlines():
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        text = current.strip()
        current = ""
        if text and not text.startswith("#"):
            lines.append(text)
    return lines


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return []


def _loop_body(lines: list[str], start: int) -> tuple[list[str], int]:
    body = []
    i = start
    while i < len(lines) and _words(lines[i]) != ["done"]:
        body.append(lines[i])
        i += 1
    return body, i + 1


def _random(command: str) -> str:
    parts = command.split()
    size = int(parts[-1])
    if "-base64" in parts:
        return base64.b64encode(secrets.token_bytes(size)).decode()
    return secrets.token_hex(size)


def guide_paths() -> list[Path]:
    deploy = REPO / "docs" / "deploy.md"
    return [deploy] if deploy.exists() else [REPO / "docs" / "kubernetes.md"]


def guide_sections(path: Path) -> str:
    """The parts of a guide that set the deployment up (all of deploy.md; Secrets and Install of kubernetes.md)."""
    text = path.read_text()
    if path.name != "kubernetes.md":
        return text
    keep = []
    for section in re.split(r"(?m)^## ", text):
        if section.startswith(("Secrets", "Install")):
            keep.append(section)
    return "\n".join(keep)


def _positional(argv: list[str]) -> list[str]:
    """The words of a command line that are not flags or flag values."""
    words, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-n", "--namespace", "-f", "--filename", "--values", "-o", "--output"):
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def iter_kubectl_objects(step: Step, repo: Path = REPO) -> Iterator[tuple[str | None, Obj]]:
    """``(namespace, object)`` for each object a ``kubectl create|apply`` step creates."""
    argv = step.argv
    if not argv or argv[0] != "kubectl":
        return
    namespace = _flag(argv, "-n", "--namespace")
    words = _positional(argv[1:])
    if words[:2] == ["create", "namespace"] and len(words) > 2:
        yield None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": words[2]}}
    elif words[:1] == ["apply"]:
        for i, arg in enumerate(argv):
            if arg in ("-f", "--filename"):
                for obj in load_manifests(repo / argv[i + 1]):
                    yield namespace, obj
    elif words[:3] == ["create", "secret", "generic"] and len(words) > 3:
        data = {}
        for arg in argv:
            if arg.startswith("--from-literal="):
                key, _, value = arg.removeprefix("--from-literal=").partition("=")
                data[key] = value
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": words[3]},
            "type": "Opaque",
            "stringData": data,
        }
        yield namespace, secret


def _flag(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def helm_release(step: Step) -> tuple[str, str, str | None, list[str]] | None:
    """``(release, chart, namespace, values files)`` of a ``helm upgrade --install`` / ``helm install`` step."""
    argv = step.argv
    if not argv or argv[0] != "helm":
        return None
    words = [w for w in _positional(argv[1:]) if w not in ("upgrade", "install")]
    if not ({"install", "upgrade"} & set(argv)) or len(words) < 2:
        return None
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-f", "--values")]
    return words[0], words[1], _flag(argv, "-n", "--namespace"), values
