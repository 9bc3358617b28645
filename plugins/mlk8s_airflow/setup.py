"""``python -m mlk8s_airflow.setup``: the deployment's init step, run once per install or upgrade.

The Helm values run it as the chart's post-install/post-upgrade hook Job (``createUserJob``, after the
database migration), with the same environment as every Airflow component. It

1. creates (or updates) the Airflow pool ``ray`` with ``include_deferred``, so deferred preprocessing tasks
   still count against its slots; a task in a pool that does not exist is never scheduled, silently, so the
   pool must exist before the first DAG run;
2. checks the connections the code uses (``ray_default``, ``airflow_api_default``, ``kubernetes_default``),
   which the values define as ``AIRFLOW_CONN_*`` variables (the API user's password from a Secret): each
   must resolve and name what the code needs, else the step fails naming the connection and the fix;
3. checks that every Airflow pool a task of the deployed DAGs (``--dags-folder``, default Airflow's
   ``[core] dags_folder``) names exists: the scheduler never queues a task whose pool is missing and only
   warns in its own log, so such a task would wait forever with nothing in its own log or the UI saying why;
   the step fails naming the pool, the tasks and the fix;
4. with ``--check-api``, logs in to the Airflow API as the Ray pool sensor will (bounded wait for the API
   server), so a wrong password shows up at install time rather than in the sensor's first cycle.

The pool is written through the ``airflow pools set`` command (an exec array, no shell), the interface
Airflow documents for it. Exit codes follow the pod contract: 0 done, 1 a failure, 2 a setting to fix.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlk8s.pod_contract import EXIT_USAGE
from mlk8s_airflow.names import AIRFLOW_API_CONN_ID, KUBERNETES_CONN_ID, RAY_CONN_ID, RAY_POOL

DEFAULT_RAY_POOL_SLOTS = 16


class SetupError(Exception):
    """A setting is missing or wrong; the message names it and the fix."""


@dataclass(frozen=True)
class PoolSpec:
    name: str
    slots: int
    description: str
    include_deferred: bool

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "airflow", "pools", "set", self.name, str(self.slots), self.description]
        return [*cmd, "--include-deferred"] if self.include_deferred else cmd


def ray_pool(slots: int) -> PoolSpec:
    if slots < 1:
        raise SetupError(f"--ray-pool-slots is {slots}: use 1 or more (how many Ray tasks may run at once).")
    return PoolSpec(RAY_POOL, slots, "Tasks that run on the shared Ray pool (scaled by ray_pool_autoscaler)", True)


def create_pool(spec: PoolSpec) -> None:
    done = subprocess.run(spec.command(), capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"airflow pools set {spec.name} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    print(f"mlk8s setup: Airflow pool {spec.name!r}: {spec.slots} slots, include_deferred={spec.include_deferred}")


def existing_pools() -> set[str]:
    """The names of the Airflow pools that exist now. This step runs with the metadata database, as
    ``airflow pools`` does (it is no task); reading the names in-process spares a second CLI start."""
    from mlk8s import compat

    return {str(pool.pool) for pool in compat.get("airflow.Pool").get_pools()}


def pools_of_dags(dags_folder: Path) -> dict[str, list[str]]:
    """Pool -> the ``dag_id.task_id`` of each task that names it, for the DAG files under ``dags_folder``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(dags_folder), safe_mode=False)
    if bag.import_errors:
        files = ", ".join(sorted(bag.import_errors))
        raise SetupError(f"DAG files under {dags_folder} do not import ({files}): fix them, then rerun this step")
    used: dict[str, list[str]] = {}
    for dag_id, dag in sorted(bag.dags.items()):
        for task in dag.tasks:
            used.setdefault(task.pool, []).append(f"{dag_id}.{task.task_id}")
    return used


def missing_pools(used: Mapping[str, Sequence[str]], existing: set[str]) -> str | None:
    """The error for the pools ``used`` names that do not exist (None: all exist). Pure."""
    missing = sorted(set(used) - existing)
    if not missing:
        return None
    lines = []
    for pool in missing:
        tasks = ", ".join(used[pool][:5]) + (f" and {len(used[pool]) - 5} more" if len(used[pool]) > 5 else "")
        lines.append(
            f"Airflow pool {pool!r} does not exist, and tasks {tasks} run in it: the scheduler never queues a "
            f"task whose pool is missing (it only warns in its own log). Create it with `airflow pools set {pool} "
            "<slots> <description>` (Admin > Pools), or set those tasks' pool= to an existing pool"
        )
    return "; ".join(lines)


def check_dag_pools(dags_folder: Path) -> None:
    """Every pool the deployed DAGs' tasks name exists (run after this step created ``ray``)."""
    if not dags_folder.is_dir():
        print(f"mlk8s setup: no DAG folder at {dags_folder}: the pools of DAGs are not checked")
        return
    used = pools_of_dags(dags_folder)
    error = missing_pools(used, existing_pools())
    if error:
        raise SetupError(error)
    print(f"mlk8s setup: every pool the DAGs under {dags_folder} use exists: {', '.join(sorted(used)) or 'none'}")


def default_dags_folder() -> Path:
    from airflow.sdk import conf

    return Path(conf.get("core", "dags_folder")).expanduser()


def check_connections() -> None:
    """Each connection resolves and holds what the code reads from it (the hooks' own checks)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from mlk8s_airflow.hooks.airflow_api import AirflowApiError, AirflowApiHook
    from mlk8s_airflow.hooks.ray_connection import RayConnectionError, RayHook

    for conn_id in (RAY_CONN_ID, AIRFLOW_API_CONN_ID, KUBERNETES_CONN_ID):
        try:
            BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise SetupError(
                f"connection {conn_id!r} is not defined: set AIRFLOW_CONN_{conn_id.upper()} in the Helm values' "
                "env (helm-values/airflow-values.yaml defines it; docs/deploy.md, step 'Secrets')."
            ) from None
    try:
        ray = RayHook(RAY_CONN_ID).get_conn()
        api = AirflowApiHook(AIRFLOW_API_CONN_ID)
        base_url = api.base_url
    except (RayConnectionError, AirflowApiError) as exc:
        raise SetupError(str(exc)) from None
    token = "set" if ray.token else "MISSING: export RAY_AUTH_TOKEN from the Secret (the values' `secret:`)"
    print(f"mlk8s setup: {RAY_CONN_ID} -> {ray.address} (token {token})")
    if not ray.token:
        raise SetupError(f"no Ray auth token for {RAY_CONN_ID!r}: the Helm values' `secret:` must set RAY_AUTH_TOKEN")
    print(f"mlk8s setup: {AIRFLOW_API_CONN_ID} -> {base_url}")


def check_api_login(wait_s: float) -> None:
    """Log in as the Ray pool sensor will, waiting up to ``wait_s`` for the API server to come up."""
    from mlk8s_airflow.hooks.airflow_api import AirflowApiError, AirflowApiHook

    hook = AirflowApiHook(AIRFLOW_API_CONN_ID, attempts=1)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            hook.get_json("/api/v2/pools/" + RAY_POOL)
            print(f"mlk8s setup: logged in to {hook.base_url} and read pool {RAY_POOL!r}")
            return
        except AirflowApiError as exc:
            raise SetupError(str(exc)) from None
        except Exception as exc:  # not up yet: connection refused, 5xx (the hook's own retries are spent)
            if time.monotonic() >= deadline:
                raise SetupError(
                    f"the Airflow API at {hook.base_url} did not answer within {wait_s:.0f} s ({exc}): check the "
                    f"API server, or the host of connection {AIRFLOW_API_CONN_ID!r}"
                ) from None
            time.sleep(2.0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlk8s_airflow.setup", description=__doc__.split("\n")[0])
    parser.add_argument("--ray-pool-slots", type=int, default=DEFAULT_RAY_POOL_SLOTS)
    parser.add_argument(
        "--dags-folder", type=Path, default=None, help="the DAGs whose pools must exist (default: [core] dags_folder)"
    )
    parser.add_argument("--check-api", action="store_true", help="also log in to the Airflow API")
    parser.add_argument("--api-wait-s", type=float, default=300.0, help="how long --check-api waits for the API")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_connections()
        create_pool(ray_pool(args.ray_pool_slots))
        check_dag_pools(args.dags_folder or default_dags_folder())
        if args.check_api:
            check_api_login(args.api_wait_s)
    except SetupError as exc:
        print(f"mlk8s setup: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("mlk8s setup: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
