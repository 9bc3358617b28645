"""``python -m local_airflow up|down|status``: start, stop and show the local Airflow and its Ray pool.

``up`` is idempotent: what already runs (same pid, same start time) is kept, what is missing is started, and
the set-up (DB, users, pool, connections) is re-applied. It returns once the UI answers and every component
reports healthy, printing the URL, the login and how long it took. ``down`` stops everything it recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from local_airflow import readiness, supervisor
from local_airflow.settings import (
    ADMIN_USER,
    API_USER,
    COMPONENTS,
    PORT_ENV,
    RAY_POOL_SERVICE,
    Settings,
    SettingsError,
    port_from_env,
)
from mlk8s.local_ray.pool import LocalRayPool

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


class UpError(RuntimeError):
    """``up`` could not finish; the message says what failed and shows its log."""


def say(message: str) -> None:
    print(message, flush=True)


def _with_scripts_path(env: dict[str, str]) -> dict[str, str]:
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS), env.get("PYTHONPATH", "")) if p)
    return env


def ray_token(settings: Settings) -> str:
    """The pool's token, made once per home (mode 0600) so a restarted pool and Airflow agree on it."""
    path = settings.ray_token_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _died(records: list[supervisor.Record]) -> str | None:
    for record in records:
        if not supervisor.alive(record):
            return f"{record.name} exited while starting; the end of its log ({record.log}):\n" + supervisor.log_tail(
                record.log
            )
    return None


#: How long ``up`` waits for the Ray pool's head (Ray gives a node 30 s to register; the service retries).
RAY_POOL_START_TIMEOUT_S = 240


def _start_ray_pool(settings: Settings, token: str) -> dict[str, object]:
    """Start the local Ray pool service (``mlk8s.local_ray.pool``), or find it running; its ``status`` JSON.

    The service's nodes run in sessions of their own and outlive this call; the token travels in the start's
    environment, so a restarted pool accepts the token Airflow's components already hold.
    """
    env = _with_scripts_path(settings.component_env(RAY_POOL_SERVICE, None))
    env["RAY_AUTH_TOKEN"] = token
    argv = [sys.executable, "-m", "mlk8s.local_ray.pool", "start", "--state-dir", str(settings.ray_state_dir)]
    argv += ["--head-cpus", str(settings.ray_cpus)]
    log = settings.log_dir / f"{RAY_POOL_SERVICE}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=RAY_POOL_START_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise UpError(
            f"the Ray pool did not start in {RAY_POOL_START_TIMEOUT_S} s (a busy machine?): run `make down` "
            f"and `make up` again; its output:\n{exc.stderr or ''}"
        ) from None
    with log.open("a") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)} -> {done.returncode}\n")
        out.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise UpError(f"the Ray pool did not start; its output ({log}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _provision(settings: Settings, ray: dict[str, object]) -> dict[str, str]:
    host, port = str(ray["address"]).rsplit(":", 1)
    spec = {
        "admin_user": ADMIN_USER,
        "api_user": API_USER,
        "base_url": settings.base_url,
        "pool_slots": settings.ray_pool_slots,
        "ray_connection": {"host": host, "port": int(port), "description": "The local Ray pool of make up"},
    }
    env = _with_scripts_path(settings.airflow_env())
    done = subprocess.run(
        [sys.executable, "-m", "local_airflow.provision", json.dumps(spec)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise UpError(f"setting up the metadata DB, users, pool and connections failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _wait_for_dags(settings: Settings, client: httpx.Client, password: str, records: list[supervisor.Record]) -> str:
    files = sorted(p for p in (settings.repo / "dags").glob("*.py") if not p.name.startswith("_"))
    api = readiness.Api(client, ADMIN_USER, password)
    seen: dict[str, bool] = {}
    errors: dict[str, str] = {}

    def parsed() -> str | None:
        nonlocal seen, errors
        seen, errors = api.dags(), api.import_errors()
        done = len(seen) + len(errors)
        return None if done >= len(files) else f"{done} of {len(files)} DAG files parsed"

    readiness.wait_until(parsed, timeout_s=120, what="the DAGs", died=lambda: _died(records))
    lines = [f"{dag_id}{' (paused)' if paused else ''}" for dag_id, paused in sorted(seen.items())]
    text = ", ".join(lines)
    for filename, trace in errors.items():
        text += f"\n    IMPORT ERROR in {filename}:\n      " + trace.strip().replace("\n", "\n      ")
    return text


def up(settings: Settings) -> int:
    started = time.monotonic()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    records = {name: supervisor.read(settings.run_dir, name) for name in COMPONENTS}
    running = {name for name, record in records.items() if supervisor.alive(record)}
    if "api-server" not in running and _port_taken(settings.host, settings.port):
        raise UpError(
            f"{settings.host}:{settings.port} is in use by another program: stop it, or pick another port with "
            f"{PORT_ENV}=8081 make up"
        )
    token = ray_token(settings)
    ray = _start_ray_pool(settings, token)
    say(f"==> Ray pool (token auth on) at {ray['address']} ({time.monotonic() - started:.0f} s)")
    phase = time.monotonic()
    provisioned = _provision(settings, ray)
    say(
        "==> metadata DB, users, pool 'ray', connections ray_default and airflow_api_default "
        f"({time.monotonic() - phase:.0f} s)"
    )
    started_now = []
    for name in COMPONENTS:
        if name in running:
            continue
        env = settings.component_env(name, token)
        log = settings.log_dir / f"{name}.log"
        records[name] = supervisor.start(settings.run_dir, name, settings.component_argv(name), env, REPO, log)
        started_now.append(name)
    say(f"==> {', '.join(started_now) or 'every component was running already'}{' started' if started_now else ''}")
    live = [r for r in records.values() if r is not None]
    with httpx.Client(base_url=settings.base_url, timeout=10.0) as client:
        readiness.wait_until(
            lambda: readiness.health_check(client),
            timeout_s=settings.start_timeout_s,
            what="Airflow",
            died=lambda: _died(live),
        )
        readiness.wait_until(lambda: readiness.ui_check(client), timeout_s=60, what="the UI", died=lambda: _died(live))
        dags = _wait_for_dags(settings, client, provisioned["admin_password"], live)
    took = time.monotonic() - started
    state = {"url": settings.base_url, "started_in_s": round(took, 1), "ray_address": ray["address"]}
    (settings.run_dir / "up.json").write_text(json.dumps(state))
    _banner(settings, took, provisioned["admin_password"], dags, str(ray["address"]))
    return 0


def _banner(settings: Settings, took: float, password: str, dags: str, ray_address: str) -> None:
    data, logs, task_logs = (_relative(p) for p in (settings.data_root, settings.log_dir, settings.home / "logs"))
    say(f"\n==> Airflow is up in {took:.0f} s: {settings.base_url}")
    say(f"    login:     {ADMIN_USER} / {password}   (kept in {_relative(settings.passwords_file)})")
    say(f"    DAGs:      {dags}")
    say("               (a paused DAG runs nothing: unpause it with its toggle, or in the trigger form)")
    say(f"    Ray pool:  {ray_address}, {settings.ray_cpus} CPUs on the head; data in {data}")
    say(f"    logs:      {logs}/<component>.log; task logs in {task_logs}")
    say("    stop:      make down")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


#: The order ``down`` stops things in: what starts tasks first, then the api-server once no client is left (its
#: graceful shutdown waits for open requests), then the Ray pool the tasks ran on.
STOP_ORDER = (("scheduler", "triggerer", "dag-processor"), ("api-server",))


def down(settings: Settings) -> int:
    stopped: list[str] = []
    killed: list[str] = []
    for names in STOP_ORDER:
        records = [r for r in (supervisor.read(settings.run_dir, n) for n in names) if r is not None]
        stopped += [r.name for r in records if supervisor.alive(r)]
        killed += supervisor.stop(settings.run_dir, records, settings.stop_grace_s)
    if LocalRayPool(settings.ray_state_dir).stop():
        stopped.append(RAY_POOL_SERVICE)
    say(f"==> stopped {', '.join(stopped)}" if stopped else "==> nothing of make up is running")
    if killed:
        say(f"    (killed after {settings.stop_grace_s:.0f} s: {', '.join(killed)})")
    return 0


def status(settings: Settings) -> int:
    any_alive = False
    for name in COMPONENTS:
        record = supervisor.read(settings.run_dir, name)
        state = "running" if supervisor.alive(record) else "stopped"
        any_alive |= state == "running"
        say(f"{name:<14} {state}{f'  pid {record.pid}' if record and state == 'running' else ''}")
    pool = LocalRayPool(settings.ray_state_dir).info()
    any_alive |= pool is not None
    nodes = f"  {pool.address}, {len(pool.workers)} worker node(s)" if pool is not None else ""
    say(f"{RAY_POOL_SERVICE:<14} {'running' if pool is not None else 'stopped'}{nodes}")
    if any_alive:
        say(f"UI: {settings.base_url}")
    return 0


def _parse_env(items: list[str]) -> dict[str, dict[str, str]]:
    extra: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, assignment = item.partition(":")
        if not sep or "=" in target:
            target, assignment = "*", item
        key, eq, value = assignment.partition("=")
        if not eq or not key:
            raise SettingsError(f"--env {item!r}: use KEY=VALUE or COMPONENT:KEY=VALUE (e.g. scheduler:FOO=1)")
        extra.setdefault(target, {})[key] = value
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_airflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--home", type=Path, default=REPO / ".airflow", help="AIRFLOW_HOME (default: ./.airflow)")
    parser.add_argument("--port", type=int, default=None, help=f"UI/API port (default: ${PORT_ENV} or 8080)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="[COMPONENT:]KEY=VALUE", help="extra environment (repeatable)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds up waits for the started components to be healthy"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings(
            repo=REPO,
            home=args.home.resolve(),
            port=args.port if args.port is not None else port_from_env(),
            extra_env=_parse_env(args.env),
            start_timeout_s=args.timeout,
        )
        return {"up": up, "down": down, "status": status}[args.command](settings)
    except (SettingsError, UpError, readiness.NotReady) as exc:
        print(f"\n!!  make {args.command} failed: {exc}", file=sys.stderr)
        if args.command == "up":
            print("    (what did start keeps running: see `make down`)", file=sys.stderr)
        return 1
