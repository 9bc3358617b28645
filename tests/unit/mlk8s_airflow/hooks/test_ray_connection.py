"""RayHook: the one parser of the Ray connection (address, token, dashboard) and its refusals."""

from __future__ import annotations

import json

import pytest

from mlk8s_airflow.hooks.ray_connection import RayConnectionError, RayHook, parse_ray_connection


def test_host_and_port_make_the_gcs_address() -> None:
    conn = parse_ray_connection("ray_default", host="mlk8s-ray-head-svc.mlk8s", port=None, environ={})
    assert conn.address == "mlk8s-ray-head-svc.mlk8s:6379"
    assert conn.token is None and conn.dashboard_url is None


def test_connection_without_host_names_the_fix() -> None:
    with pytest.raises(RayConnectionError, match="connection 'ray_x' has no host.*AIRFLOW_CONN_RAY_X"):
        parse_ray_connection("ray_x", host=None, port=None, environ={})


@pytest.mark.parametrize("host", ["ray://head", "http://head"])
def test_a_scheme_is_refused_instead_of_silently_stripped(host: str) -> None:
    with pytest.raises(RayConnectionError, match="without a scheme.*6379"):
        parse_ray_connection("c", host=host, port=10001, environ={})


def test_a_port_inside_the_host_is_refused() -> None:
    with pytest.raises(RayConnectionError, match="port field"):
        parse_ray_connection("c", host="head:6379", port=None, environ={})


def test_token_comes_from_the_password_else_the_process_and_is_never_printed() -> None:
    conn = parse_ray_connection("c", host="h", port=1, password="s3cret", environ={"RAY_AUTH_TOKEN": "other"})
    assert conn.token == "s3cret"
    assert "s3cret" not in repr(conn) and "s3cret" not in str(conn)
    assert parse_ray_connection("c", host="h", port=1, environ={"RAY_AUTH_TOKEN": "env"}).token == "env"


def test_hook_reads_an_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_RAY_T",
        json.dumps({"conn_type": "generic", "host": "head", "port": 7000, "extra": {"dashboard_url": "http://d"}}),
    )
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    conn = RayHook("ray_t").get_conn()
    assert (conn.address, conn.token, conn.dashboard_url) == ("head:7000", None, "http://d")
