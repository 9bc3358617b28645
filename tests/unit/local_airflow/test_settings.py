"""Each component's environment: the deployment's settings, nothing leaked from the caller's shell, the Ray
token only where Ray-bound code runs, and per-component overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from local_airflow.settings import COMPONENTS, Settings, SettingsError, port_from_env

SHELL = {
    "PATH": "/usr/bin",
    "HOME": "/root",
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW_HOME": "/somewhere/else",
    "AIRFLOW_CONN_RAY_DEFAULT": "generic://elsewhere:6379",
    "RAY_ADDRESS": "10.0.0.1:6379",
    "MLK8S_IMAGE": "registry.example/mlk8s:1",
}


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(repo=tmp_path / "repo", home=tmp_path / "home", port=18080, **kw)  # type: ignore[arg-type]


def test_the_callers_airflow_and_ray_settings_do_not_leak_in(tmp_path: Path) -> None:
    env = settings(tmp_path).airflow_env(SHELL)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert "AIRFLOW_CONN_RAY_DEFAULT" not in env and "RAY_ADDRESS" not in env
    assert env["HOME"] == "/root" and env["MLK8S_IMAGE"] == "registry.example/mlk8s:1"  # the rest passes through
    assert env["PATH"].endswith("/usr/bin") and env["PATH"] != "/usr/bin"  # the venv's bin comes first


def test_everything_a_run_needs_is_set(tmp_path: Path) -> None:
    env = settings(tmp_path).airflow_env(SHELL)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path / "repo" / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(tmp_path / "repo" / "plugins")
    assert env["AIRFLOW__MLK8S__BACKEND"] == "local"
    assert env["MLK8S_DATA_ROOT"] == str(tmp_path / "home" / "data")
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,mlk8s-ray-pool:viewer"


def test_the_ray_token_goes_only_where_ray_bound_code_runs(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with_token = {name for name in COMPONENTS if s.component_env(name, "tok", SHELL).get("RAY_AUTH_TOKEN") == "tok"}
    assert with_token == {"scheduler", "triggerer"}


def test_per_component_overrides_apply_on_top(tmp_path: Path) -> None:
    s = settings(
        tmp_path, extra_env={"*": {"A": "all"}, "scheduler": {"A": "mine", "AIRFLOW__MLK8S__BACKEND": "kubernetes"}}
    )
    assert s.component_env("scheduler", None, SHELL)["A"] == "mine"
    assert s.component_env("scheduler", None, SHELL)["AIRFLOW__MLK8S__BACKEND"] == "kubernetes"
    assert s.component_env("triggerer", None, SHELL)["A"] == "all"
    with pytest.raises(SettingsError, match="unknown component"):
        settings(tmp_path, extra_env={"schedular": {"A": "1"}})


def test_components_listen_on_loopback_only(tmp_path: Path) -> None:
    s = settings(tmp_path)
    api = s.component_argv("api-server")
    assert api[api.index("--host") + 1] == "127.0.0.1" and api[api.index("--port") + 1] == "18080"
    # The scheduler's and triggerer's log servers would listen on every interface: they are not started.
    assert "--skip-serve-logs" in s.component_argv("scheduler") and "--skip-serve-logs" in s.component_argv("triggerer")


def test_the_port_comes_from_airflow_port(tmp_path: Path) -> None:
    assert port_from_env({}) == 8080
    assert port_from_env({"AIRFLOW_PORT": "8081"}) == 8081
    for bad in ("http", "0", "70000"):
        with pytest.raises(SettingsError, match="AIRFLOW_PORT"):
            port_from_env({"AIRFLOW_PORT": bad})


def test_every_component_finds_this_homes_ray_pool_never_the_callers(tmp_path: Path) -> None:
    from mlk8s.local_ray.pool import POOL_ENV

    s = settings(tmp_path)
    shell = {**SHELL, POOL_ENV: "/somewhere/else/pool"}
    assert {s.component_env(name, "tok", shell)[POOL_ENV] for name in COMPONENTS} == {str(s.ray_state_dir)}
