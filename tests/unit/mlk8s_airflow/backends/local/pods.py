"""Pods for the local backend's tests, and a task log that keeps what the backend writes to it."""

from __future__ import annotations

from pathlib import Path

from kubernetes.client import models as k8s

from mlk8s_airflow.backends.local.process import LocalPodProcess, LocalRunResult
from mlk8s_airflow.backends.local.process_spec import process_spec_from_pod


class ListLog:
    """Collects what the backend writes to the task log, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _add(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args if args else msg)

    info = warning = error = debug = _add


def make_pod(
    args: list[str],
    *,
    command: list[str] | None = None,
    env: list[k8s.V1EnvVar] | None = None,
    image: str = "ghcr.io/acme/mlk8s:0.1.0",
    working_dir: str | None = None,
    grace: int | None = None,
    resources: k8s.V1ResourceRequirements | None = None,
    env_from: list[k8s.V1EnvFromSource] | None = None,
) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="job-abc", namespace="ml", labels={"team": "search"}),
        spec=k8s.V1PodSpec(
            termination_grace_period_seconds=grace,
            containers=[
                k8s.V1Container(
                    name="base",
                    image=image,
                    command=["python", "-c"] if command is None else command,
                    args=args,
                    env=env,
                    env_from=env_from,
                    working_dir=working_dir,
                    resources=resources,
                ),
                k8s.V1Container(name="airflow-xcom-sidecar", image="alpine", command=["sh"]),
            ],
        ),
    )


def run(pod: k8s.V1Pod, tmp_path: Path, **kw: object) -> tuple[LocalRunResult, ListLog]:
    spec = process_spec_from_pod(
        pod, container_name="base", scratch_dir=tmp_path, worker_env=kw.pop("worker_env", None)
    )  # type: ignore[arg-type]
    log = ListLog()
    result = LocalPodProcess(spec, log=log).run(**kw)  # type: ignore[arg-type]
    return result, log
