"""What the local backend runs for a pod: the exec array, the worker's Python, refusals before any launch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kubernetes.client import models as k8s

from mlk8s_airflow.backends.local.process_spec import process_spec_from_pod
from mlk8s_airflow.backends.podspec import PodSpecError
from tests.unit.mlk8s_airflow.backends.local.pods import make_pod, run


def test_literal_kpo_xcom_path_is_remapped(tmp_path: Path) -> None:
    code = "import json, sys; open(sys.argv[1], 'w').write(json.dumps([1, 2]))"
    result, _ = run(make_pod([code, "/airflow/xcom/return.json"]), tmp_path)
    assert result.xcom == [1, 2]


def test_python_means_the_workers_python(tmp_path: Path) -> None:
    spec = process_spec_from_pod(make_pod(["pass"]), container_name="base", scratch_dir=tmp_path)
    assert spec.argv[0] == sys.executable


@pytest.mark.parametrize(
    ("pod_kwargs", "match"),
    [
        ({"command": [], "args": []}, "no command: set cmds"),
        ({"image": ""}, "image is empty"),
        ({"image": "Not An Image"}, "not a valid image reference"),
        ({"image": "repo/{{ params.tag }}"}, "unrendered template"),
        ({"command": ["no-such-binary-mlk8s"]}, "not on PATH"),
        ({"working_dir": "/no/such/dir"}, "working_dir '/no/such/dir' does not exist"),
        ({"env": [k8s.V1EnvVar(name="1BAD", value="x")]}, "env var name '1BAD' is invalid"),
    ],
)
def test_bad_pod_is_refused_before_launch(tmp_path: Path, pod_kwargs: dict, match: str) -> None:
    args = pod_kwargs.pop("args", ["pass"])
    with pytest.raises(PodSpecError, match=match):
        process_spec_from_pod(make_pod(args, **pod_kwargs), container_name="base", scratch_dir=tmp_path)


def test_missing_container_is_named(tmp_path: Path) -> None:
    with pytest.raises(PodSpecError, match="no container named 'main'.*base, airflow-xcom-sidecar"):
        process_spec_from_pod(make_pod(["pass"]), container_name="main", scratch_dir=tmp_path)


def test_escaped_references_reach_argv_literally(tmp_path: Path) -> None:
    """Issue 13: an argument the operator escaped ($ as $$) is not expanded, even when the variable exists."""
    token_env = [k8s.V1EnvVar(name="RAY_AUTH_TOKEN", value="s3cret-token")]
    spec = process_spec_from_pod(
        make_pod(["pass", "/$$(RAY_AUTH_TOKEN)", "$(RAY_AUTH_TOKEN)"], env=token_env),
        container_name="base",
        scratch_dir=tmp_path,
    )
    assert spec.argv[3:] == ("/$(RAY_AUTH_TOKEN)", "s3cret-token")  # kubelet semantics, both ways
