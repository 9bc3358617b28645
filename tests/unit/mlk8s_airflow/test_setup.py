"""``python -m mlk8s_airflow.setup``, the deployment's init step, run with the environment the Helm values
give it (connections, and Secrets as docs/deploy.md creates them): the pool ``ray`` exists afterwards, and a
missing or wrong setting fails the step with a line naming it (issue 10, defect 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlk8s_airflow.names import AIRFLOW_API_CONN_ID, RAY_POOL
from tests.unit.k8s.deploy_doc import parse
from tests.unit.k8s.manifests import load_one

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def deployed_env() -> dict[str, str]:
    """The init Job's environment: the values' env, and their `secret:` entries read from the docs' Secrets."""
    values = load_one("airflow-values.yaml")
    env = {e["name"]: e["value"] for e in values["env"] if e["name"] != "AIRFLOW__MLK8S__NAMESPACE"}
    secrets = parse().secrets
    shell = {"$RAY_TOKEN": "t" * 64, "$API_PASSWORD": "pw", "$ADMIN_PASSWORD": "admin-pw"}
    for entry in values["secret"]:
        value = secrets[("airflow", entry["secretName"])][entry["secretKey"]]
        for var, fake in shell.items():
            value = value.replace(var, fake)
        env[entry["envName"]] = value
    return env


def run_setup(*args: str, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **deployed_env()}
    for name in drop:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mlk8s_airflow.setup", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_init_step_creates_the_ray_pool_counting_deferred_tasks(airflow_db: Path) -> None:
    done = run_setup("--ray-pool-slots", "6")
    assert done.returncode == 0, done.stderr
    assert "ray_default -> mlk8s-ray-head-svc.mlk8s:6379 (token set)" in done.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "get", RAY_POOL, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    pool, _ = json.JSONDecoder().raw_decode(listed.stdout[listed.stdout.index("[{") :])
    assert pool[0]["pool"] == RAY_POOL and int(pool[0]["slots"]) == 6
    assert str(pool[0]["include_deferred"]).lower() == "true"
    again = run_setup()
    assert again.returncode == 0, again.stderr  # idempotent: an upgrade runs it again
    assert "every pool the DAGs under" in again.stdout and "ray" in again.stdout  # the shipped DAGs' pools exist


A_DAG_IN_A_MISSING_POOL = """
import pendulum
from airflow.sdk import dag
from mlk8s_airflow.operators.preprocessing import PreprocessingOperator

@dag(dag_id="gpu_features", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"))
def gpu_features():
    PreprocessingOperator(task_id="embed", input_uri="s3://in", output_uri="s3://out", pool="ray-gpu")

gpu_features()
"""


def test_a_task_in_a_pool_that_does_not_exist_fails_the_step_naming_the_pool_and_the_fix(
    airflow_db: Path, tmp_path: Path
) -> None:
    """The scheduler never queues such a task and says so only in its own log: the init step must say it."""
    (tmp_path / "gpu_features.py").write_text(A_DAG_IN_A_MISSING_POOL)
    done = run_setup("--dags-folder", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Airflow pool 'ray-gpu' does not exist, and tasks gpu_features.embed run in it" in done.stderr
    assert "airflow pools set ray-gpu <slots> <description>" in done.stderr
    assert "Traceback" not in done.stderr
    created = subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "set", "ray-gpu", "2", "GPU work"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert run_setup("--dags-folder", str(tmp_path)).returncode == 0  # the fix the message names works


def test_missing_pools_names_each_missing_pool_once_with_its_tasks() -> None:
    from mlk8s_airflow.setup import missing_pools

    used = {"ray": ["a.t"], "gpu": [f"d.t{i}" for i in range(7)], "default_pool": ["b.t"]}
    assert missing_pools(used, {"ray", "default_pool", "gpu"}) is None
    error = missing_pools(used, {"default_pool"})
    assert error is not None
    assert error.count("does not exist") == 2
    assert "tasks d.t0, d.t1, d.t2, d.t3, d.t4 and 2 more run in it" in error


@pytest.mark.parametrize(
    ("args", "drop", "message"),
    [
        ((), ("AIRFLOW_CONN_AIRFLOW_API_DEFAULT",), f"connection {AIRFLOW_API_CONN_ID!r} is not defined"),
        ((), ("RAY_AUTH_TOKEN",), "no Ray auth token for 'ray_default'"),
        (("--ray-pool-slots", "0"), (), "--ray-pool-slots is 0"),
        (("--check-api", "--api-wait-s", "1"), (), "did not answer within 1 s"),
    ],
    ids=["no-api-connection", "no-ray-token", "no-slots", "api-unreachable"],
)
def test_a_bad_setting_fails_the_step_naming_it(
    airflow_db: Path, args: tuple[str, ...], drop: tuple[str, ...], message: str
) -> None:
    done = run_setup(*args, drop=drop)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
