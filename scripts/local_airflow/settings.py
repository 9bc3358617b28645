"""Where a local Airflow lives (its home, port, logs, data) and the environment each component runs with.

The inherited environment is cleaned of Airflow and Ray settings (a shell's ``AIRFLOW__CORE__EXECUTOR`` or
``RAY_ADDRESS`` must not leak into a component); what a component needs is set here, and ``extra_env`` adds
per-component settings (``"*"`` for all) on top.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlk8s.local_ray.pool import POOL_ENV
from mlk8s_airflow.names import AIRFLOW_API_USER

#: The components, in start order; ``down`` stops them in reverse.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The Ray pool service's name beside them (``mlk8s.local_ray.pool``; the Airflow pool is ``names.RAY_POOL``).
RAY_POOL_SERVICE = "ray-pool"
#: The variable that changes the UI's port (``AIRFLOW_PORT=8081 make up``).
PORT_ENV = "AIRFLOW_PORT"
DEFAULT_PORT = 8080
#: Users of Airflow's SimpleAuthManager: you log in as admin; the Ray pool sensor reads the queue as the API user.
ADMIN_USER = "admin"
API_USER = AIRFLOW_API_USER
USERS = f"{ADMIN_USER}:admin,{API_USER}:viewer"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
#: Components that run Ray-bound code and so need the pool's token (task processes are the scheduler's children).
NEEDS_RAY_TOKEN = ("scheduler", "triggerer")

_DROPPED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "RAY_")
_DROPPED = ("AIRFLOW_HOME", "MLK8S_DATA_ROOT", "MLK8S_LOCAL_SCRATCH", POOL_ENV)


class SettingsError(ValueError):
    """A setting that cannot work; the message names it and the fix."""


def port_from_env(environ: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(PORT_ENV, "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{PORT_ENV}={raw!r} is not a TCP port; use a number from 1 to 65535, e.g. 8081")
    return int(raw)


def _default_sizes() -> tuple[int, int]:
    cpus = os.cpu_count() or 2
    return min(32, max(4, 2 * cpus)), max(2, cpus)


@dataclass(frozen=True)
class Settings:
    """One local Airflow. ``parallelism`` bounds the LocalExecutor's task processes; ``ray_cpus`` the pool's head."""

    repo: Path
    home: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    parallelism: int = field(default_factory=lambda: _default_sizes()[0])
    ray_cpus: int = field(default_factory=lambda: _default_sizes()[1])
    ray_pool_slots: int = 4
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    start_timeout_s: float = 300.0
    stop_grace_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port {self.port} is not a TCP port; set {PORT_ENV} to a number from 1 to 65535")
        if self.parallelism < 1 or self.ray_cpus < 1 or self.ray_pool_slots < 1:
            raise SettingsError("parallelism, ray_cpus and ray_pool_slots must each be at least 1")
        unknown = sorted(set(self.extra_env) - {"*", *COMPONENTS, RAY_POOL_SERVICE})
        if unknown:
            raise SettingsError(
                f"extra_env names unknown component(s) {unknown}; use '*' or one of {[*COMPONENTS, RAY_POOL_SERVICE]}"
            )

    # -- places --------------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """Pid records, component logs and the pool's state; Airflow's own files stay where it puts them."""
        return self.home / "up"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def data_root(self) -> Path:
        return self.home / "data"

    @property
    def ray_state_dir(self) -> Path:
        """The local Ray pool's state dir (``mlk8s.local_ray.pool``): every process finds the pool through it."""
        return self.run_dir / "ray"

    @property
    def ray_token_file(self) -> Path:
        """The pool's token, kept across pool restarts so the pool and Airflow's components always agree."""
        return self.ray_state_dir / "auth_token"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def passwords_file(self) -> Path:
        """Where SimpleAuthManager (and ``airflow standalone``) writes the generated passwords."""
        return self.home / "simple_auth_manager_passwords.json.generated"

    # -- environments --------------------------------------------------------------------------------------
    def airflow_env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """What every Airflow process of this deployment runs with (the provisioning step included)."""
        inherited = dict(os.environ if environ is None else environ)
        env = {k: v for k, v in inherited.items() if not k.startswith(_DROPPED_PREFIXES) and k not in _DROPPED}
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
                # The UI's links and the workers' Execution API (``{base_url}/execution/``) follow the port.
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                # A task's supervisor calls the Execution API on the api-server; 5 s (the default) is too short
                # on a busy laptop sharing SQLite between four components.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                # New DAG files show up within half a minute instead of five.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__MLK8S__BACKEND": "local",
                "MLK8S_DATA_ROOT": str(self.data_root),
                "MLK8S_LOCAL_SCRATCH": str(self.home / "pods"),
                # The local actuator of ray_pool_autoscaler grows and drains this pool from any component.
                POOL_ENV: str(self.ray_state_dir),
            }
        )
        env.update(self.extra_env.get("*", {}))
        return env

    def component_env(
        self, name: str, ray_token: str | None, environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The environment of one component: the common one, the Ray token where Ray-bound code runs, overrides."""
        env = self.airflow_env(environ)
        if name in NEEDS_RAY_TOKEN and ray_token:
            # The local backend hands a pod's Secret-backed RAY_AUTH_TOKEN from here; triggers read it too.
            env["RAY_AUTH_TOKEN"] = ray_token
        env.update(self.extra_env.get(name, {}))
        return env

    def component_argv(self, name: str) -> list[str]:
        if name not in COMPONENTS:
            raise SettingsError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}")
        argv = [sys.executable, "-m", "airflow", name]
        if name == "api-server":
            argv += ["--host", self.host, "--port", str(self.port), "--workers", "1"]
        elif name in ("scheduler", "triggerer"):
            # Their log servers listen on every interface at fixed ports (8793, 8794) for remote workers;
            # here the api-server reads the task logs from the same disk, so they are not started.
            argv.append("--skip-serve-logs")
        return argv
