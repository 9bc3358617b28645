"""PreprocessingOperator: the driver pod it sends (Ray address from the connection, token from a Secret), its
placement and pool, and its bad-input errors. The pipeline itself is tested in tests/integration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from mlk8s_airflow.names import RAY_AUTH_SECRET, RAY_AUTH_SECRET_KEY
from mlk8s_airflow.operators.preprocessing import PreprocessingOperator, preprocessing_arguments
from tests.k8s_api import MockKubeServer
from tests.unit.mlk8s_airflow.operators.test_pod_kubernetes import context_for

IMAGE = "ghcr.io/acme/mlk8s:0.1.0"


@pytest.fixture
def ray_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_RAY_TEST",
        json.dumps(
            {
                "conn_type": "generic",
                "host": "mlk8s-ray-head-svc",
                "port": 6379,
                "extra": {"dashboard_url": "http://ray.example/dash"},
            }
        ),
    )


def test_pipeline_dict_travels_as_json_in_an_exec_array() -> None:
    args = preprocessing_arguments(
        input_uri="s3://in", output_uri="s3://out", pipeline={"steps": [{"use": "clean_text"}]}
    )
    assert args == ["--input", "s3://in", "--output", "s3://out", "--pipeline", '{"steps": [{"use": "clean_text"}]}']


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"input_uri": ""}, "input_uri is empty"), ({"output_uri": " "}, "output_uri is empty")],
)
def test_empty_uris_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        preprocessing_arguments(**{"input_uri": "a", "output_uri": "b", "pipeline": None, **kwargs})


@pytest.mark.slow
def test_driver_pod_on_kubernetes(k8s_server: MockKubeServer, k8s_kubeconfig: Path, ray_conn: None) -> None:
    k8s_server.script_pod("preprocess", logs=["rows=10"], xcom={"output_rows": 9, "output_uri": "s3://out"})
    op = PreprocessingOperator(
        task_id="preprocess",
        image=IMAGE,
        namespace="mlk8s",
        config_file=str(k8s_kubeconfig),
        in_cluster=False,
        backend="kubernetes",
        startup_check_interval_seconds=1,
        input_uri="s3://in",
        output_uri="s3://out",
        ray_conn_id="ray_test",
        env_vars={"EXTRA": "1"},
        deferrable=False,
    )
    ctx: dict[str, Any] = context_for("preprocess")
    assert op.execute(ctx) == {"output_rows": 9, "output_uri": "s3://out"}
    assert op.pool == "ray"
    assert ctx["ti"].xcoms["ray_dashboard_url"] == "http://ray.example/dash"
    sent = next(r for r in k8s_server.requests if r.method == "POST" and r.path.endswith("/pods"))
    pod = sent.body if isinstance(sent.body, dict) else json.loads(sent.body)
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    env = {e["name"]: e for e in base["env"]}
    assert env["RAY_ADDRESS"]["value"] == "mlk8s-ray-head-svc:6379"
    # The Secret docs/deploy.md creates (tests/unit/k8s/test_names.py checks the two sides agree).
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": RAY_AUTH_SECRET, "key": RAY_AUTH_SECRET_KEY}
    assert "value" not in env["RAY_AUTH_TOKEN"]  # never the token itself
    assert env["EXTRA"]["value"] == "1"
    assert base["command"] == ["python", "-m", "mlk8s.preprocessing"]
    pref = pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert pref["preference"]["matchExpressions"][0]["values"] == ["stateless"]
    assert pod["metadata"]["labels"]["mlk8s.io/component"] == "preprocessing"


def test_pod_without_connection_fails_before_launch(k8s_kubeconfig: Path) -> None:
    op = PreprocessingOperator(
        task_id="p",
        image=IMAGE,
        input_uri="a",
        output_uri="b",
        ray_conn_id="no_such_conn",
        backend="kubernetes",
        config_file=str(k8s_kubeconfig),
    )
    with pytest.raises(Exception, match="no_such_conn"):
        op.execute(context_for("p"))


def test_pod_spec_is_schema_valid(ray_conn: None) -> None:
    import kubernetes_validate

    op = PreprocessingOperator(
        task_id="p", image=IMAGE, namespace="mlk8s", input_uri="a", output_uri="b", ray_conn_id="ray_test"
    )
    op.arguments = preprocessing_arguments(input_uri="a", output_uri="b", pipeline=None)
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context_for("p"), dry_run=True))
    kubernetes_validate.validate(pod, "1.33", strict=True)


def test_the_token_secret_is_configurable_and_the_task_defers(ray_conn: None) -> None:
    op = PreprocessingOperator(
        task_id="p",
        image=IMAGE,
        namespace="mlk8s",
        input_uri="a",
        output_uri="b",
        ray_conn_id="ray_test",
        ray_token_secret="team-ray",
        ray_token_secret_key="token",
    )
    op.arguments = preprocessing_arguments(input_uri="a", output_uri="b", pipeline=None)
    pod = op.build_pod_request_obj(context_for("p"), dry_run=True)
    env = {e.name: e for e in pod.spec.containers[0].env}
    ref = env["RAY_AUTH_TOKEN"].value_from.secret_key_ref
    assert (ref.name, ref.key) == ("team-ray", "token")
    assert env["RAY_ADDRESS"].value == "mlk8s-ray-head-svc:6379"
    assert op.deferrable is True and pod.spec.priority_class_name == "mlk8s-preemptible"
