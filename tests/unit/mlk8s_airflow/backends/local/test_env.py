"""A local pod's environment: values with $(VAR) expansion, fieldRefs, resourceFieldRefs, Secrets only from the
worker's variable of the same name, nothing else of the worker's environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.client import models as k8s

from mlk8s_airflow.backends.local.process_spec import process_spec_from_pod
from mlk8s_airflow.backends.podspec import PodSpecError
from tests.unit.mlk8s_airflow.backends.local.pods import make_pod, run


def test_env_args_and_field_refs_reach_the_process(tmp_path: Path) -> None:
    code = "import os, sys; print(os.environ['GREETING'], os.environ['POD'], os.environ['NS'], os.environ['TEAM'], sys.argv[1:])"
    pod = make_pod(
        [code, "$(GREETING)", "$$(literal)"],
        env=[
            k8s.V1EnvVar(name="WHO", value="world"),
            k8s.V1EnvVar(name="GREETING", value="hello-$(WHO)"),
            k8s.V1EnvVar(
                name="POD",
                value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.name")),
            ),
            k8s.V1EnvVar(
                name="NS",
                value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.namespace")),
            ),
            k8s.V1EnvVar(
                name="TEAM",
                value_from=k8s.V1EnvVarSource(
                    field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.labels['team']")
                ),
            ),
        ],
    )
    result, log = run(pod, tmp_path)
    assert result.returncode == 0
    assert "hello-world job-abc ml search ['hello-world', '$(literal)']" in log.lines


def test_worker_secrets_do_not_leak_into_the_pod(tmp_path: Path) -> None:
    pod = make_pod(["import os; print(sorted(k for k in os.environ if k.startswith('AIRFLOW')))"])
    result, log = run(
        pod,
        tmp_path,
        worker_env={"PATH": "/usr/bin:/bin", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:pw@db"},
    )
    assert result.returncode == 0
    assert "[]" in log.lines


def test_secret_backed_env_comes_from_the_worker_env_only_when_named(tmp_path: Path) -> None:
    secret_env = k8s.V1EnvVar(
        name="API_TOKEN",
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="creds", key="token")),
    )
    pod = make_pod(["import os; print(len(os.environ['API_TOKEN']))"], env=[secret_env])
    result, log = run(pod, tmp_path, worker_env={"PATH": "/usr/bin:/bin", "API_TOKEN": "s3cret"})
    assert result.returncode == 0 and "6" in log.lines
    assert not any("s3cret" in line for line in log.lines)


def test_unresolvable_secret_is_a_clear_error_before_launch(tmp_path: Path) -> None:
    secret_env = k8s.V1EnvVar(
        name="API_TOKEN",
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="creds", key="token")),
    )
    with pytest.raises(PodSpecError, match=r"API_TOKEN.*Secret 'creds' key 'token'.*export API_TOKEN"):
        process_spec_from_pod(
            make_pod(["pass"], env=[secret_env]), container_name="base", scratch_dir=tmp_path, worker_env={}
        )
    assert not (tmp_path / "workdir").exists()


def test_env_from_secret_is_refused(tmp_path: Path) -> None:
    pod = make_pod(["pass"], env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="all-creds"))])
    with pytest.raises(PodSpecError, match="env_from Secret 'all-creds'"):
        process_spec_from_pod(pod, container_name="base", scratch_dir=tmp_path, worker_env={})


def test_resource_field_ref_reads_the_container_limits(tmp_path: Path) -> None:
    limit = k8s.V1EnvVar(
        name="CPUS",
        value_from=k8s.V1EnvVarSource(resource_field_ref=k8s.V1ResourceFieldSelector(resource="limits.cpu")),
    )
    mem = k8s.V1EnvVar(
        name="MEM_MI",
        value_from=k8s.V1EnvVarSource(
            resource_field_ref=k8s.V1ResourceFieldSelector(resource="limits.memory", divisor="1Mi")
        ),
    )
    pod = make_pod(
        ["import os; print(os.environ['CPUS'], os.environ['MEM_MI'])"],
        env=[limit, mem],
        resources=k8s.V1ResourceRequirements(limits={"cpu": "1500m", "memory": "2Gi"}),
    )
    result, log = run(pod, tmp_path)
    assert result.returncode == 0 and "2 2048" in log.lines


def test_bad_resource_quantity_names_the_value(tmp_path: Path) -> None:
    limit = k8s.V1EnvVar(
        name="CPUS",
        value_from=k8s.V1EnvVarSource(resource_field_ref=k8s.V1ResourceFieldSelector(resource="limits.cpu")),
    )
    pod = make_pod(["pass"], env=[limit], resources=k8s.V1ResourceRequirements(limits={"cpu": "lots"}))
    with pytest.raises(PodSpecError, match="resource quantity 'lots' is not valid"):
        process_spec_from_pod(pod, container_name="base", scratch_dir=tmp_path)
