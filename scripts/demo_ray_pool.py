"""The demo's scaling segment: Airflow's queue grows and drains, and the Ray pool follows with real nodes.

Built on the product: the local Ray pool service (the demo's cluster served from a state dir, as ``make up``
serves its pool), the sensor's own loop (``RayPoolLoop.run``: queue counts over Airflow's REST API, Ray's
state from the GCS, the policy, the local actuator), and Airflow's API server (a subprocess on the demo's
AIRFLOW_HOME). The run of DAG ``ray_pool_demo_queue`` (pool ``ray``) is triggered through the REST API and its
tasks are marked done through it. No scheduler runs here, so the demo stands in for the scheduler and the
workers in the one step the API does not offer: it moves the task instances to queued and running in the
metadata database, and runs the Ray work those tasks stand for. Every figure printed is read back from the API
or from Ray.

The policy runs with a demo-sized scale-down window (``WINDOW_S`` instead of the default 60 s).
``run(cluster, airflow_home)`` is what ``scripts/demo.py`` calls; ``python scripts/demo_ray_pool.py`` starts the
pool service and Airflow's database itself and runs the same segment.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlk8s.local_ray import LocalRayCluster
    from mlk8s_airflow.ray_pool.loop import CycleResult, RayPoolLoop, RunReport

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "ray_pool_demo_queue"
POOL = "ray"
GROUP: dict[str, Any] = {"name": "cpu", "min_workers": 0, "max_workers": 2, "cpus_per_worker": 1}
WINDOW_S = 20.0  # demo-sized scale-down window (the policy's default is 60 s)
INTERVAL_S = 2.0
WORK_S = 4.0  # the Ray work of one task: one 1-CPU Ray task
READER, OPERATOR = "mlk8s_ray_pool", "mlk8s_demo"  # the loop only reads; the demo's stand-in marks tasks done
API_START_TIMEOUT_S = 90.0
GROW_CYCLES, DRAIN_CYCLES = 10, int((WINDOW_S + 45.0) / INTERVAL_S)
WORK_TIMEOUT_S = 90.0


class DemoError(RuntimeError):
    """The segment could not show what it claims; the message says what happened instead."""


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


@contextlib.contextmanager
def api_server(airflow_home: Path, workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Airflow's API server on ``airflow_home``; yields (base URL, passwords by user), generated here (file mode
    0600 in ``workdir``), so the demo never reads or prints the admin's password."""
    import httpx

    from mlk8s.net import LOOPBACK, free_port

    passwords = {READER: secrets.token_urlsafe(24), OPERATOR: secrets.token_urlsafe(24)}
    path = workdir / "passwords.json"
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        json.dump(passwords, fh)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{READER}:viewer,{OPERATOR}:op",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(path),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    }
    port = free_port(LOOPBACK)
    args = [sys.executable, "-m", "uvicorn", "--factory", "airflow.api_fastapi.app:create_app"]
    args += ["--host", LOOPBACK, "--port", str(port), "--log-level", "warning"]
    log_path = workdir / "api-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while not _healthy(httpx, base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"the Airflow API server at {base} did not answer:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base, passwords
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _healthy(httpx: Any, base: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return bool(httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200)
    return False


class Api:
    """The operator's REST calls: trigger a run, mark its tasks done."""

    def __init__(self, base: str, password: str) -> None:
        import httpx

        token = httpx.post(f"{base}/auth/token", json={"username": OPERATOR, "password": password}).json()
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token['access_token']}"})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise DemoError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def trigger(self) -> tuple[str, list[str]]:
        run = self.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
        tis = self.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances")
        return run["dag_run_id"], sorted(ti["task_id"] for ti in tis["task_instances"])

    def finish(self, run_id: str, task_ids: list[str], state: str = "success") -> None:
        for task_id in task_ids:
            path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}"
            self.call("PATCH", path, json={"new_state": state})


def stand_in_for_the_scheduler(run_id: str, task_ids: list[str], state: str) -> None:
    """queued (the scheduler) and running (a worker): the two moves Airflow's REST API does not offer."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        for ti in session.query(TaskInstance).filter(
            TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id, TaskInstance.task_id.in_(task_ids)
        ):
            ti.state = state


class Narrator:
    """Prints a cycle when what it shows changed, and keeps every decision for the summary."""

    def __init__(self, pool_size: Callable[[], int]) -> None:
        self.pool_size = pool_size
        self.started = time.monotonic()
        self.last: tuple[Any, ...] | None = None
        self.decisions: list[dict[str, Any]] = []
        self.peaks = {"queued": 0, "pool": pool_size()}

    def __call__(self, result: CycleResult) -> None:
        point, decision, size = result.point, result.decisions[0], self.pool_size()
        t = round(time.monotonic() - self.started, 1)
        self.peaks = {"queued": max(self.peaks["queued"], point["queued"]), "pool": max(self.peaks["pool"], size)}
        self.decisions.append(
            {"t_s": t, **{k: point[k] for k in ("queued", "running", "ray_pending", "pool")}}
            | {"target": decision.target, "pool_after": size, "reason": decision.reason}
        )
        key = (point["queued"], point["running"], point["ray_pending"], decision.current, decision.target, size)
        if key == self.last:
            return
        self.last = key
        reason = decision.reason
        for node_id in decision.remove:  # Ray node ids are 56 hex digits; the actuator prints 8
            reason = reason.replace(node_id, node_id[:8])
        print(
            f"    [{t:5.1f} s] Airflow pool '{POOL}': {point['queued']} queued/scheduled, {point['running']} running"
            f" | Ray: {point['ray_pending']} pending request(s), {decision.current} pool node(s)",
            flush=True,
        )
        print(f"              decision {decision.current} -> {decision.target}: {reason}", flush=True)
        for applied in result.applied:
            print(f"              local actuator: {applied.note}; Ray now reports {size} node(s)", flush=True)


def cycles_until(
    loop: RayPoolLoop, report: RunReport, narrator: Narrator, done: Callable[[], bool], most: int, what: str
) -> RunReport:
    """The sensor's loop, one cycle at a time, until ``done()``; a failed cycle or ``most`` cycles is an error."""
    for _ in range(most):
        report = loop.run(report.state, report.seq, cycles=1, max_failed_cycles=1, on_cycle=narrator)
        if report.error:
            raise DemoError(report.error)
        if done():
            return report
    raise DemoError(f"{what} did not happen within {most} cycles: {narrator.decisions[-1]['reason']}")


def run(cluster: LocalRayCluster, airflow_home: str | os.PathLike[str]) -> dict[str, Any]:
    """Grow the Ray pool for a queue in Airflow pool ``ray`` and shrink it when the queue drains (see the module
    docstring). Returns what happened (``ok``: the pool grew and came back to its size before)."""
    import ray

    from mlk8s.local_ray.pool import LocalRayPool
    from mlk8s.ray_driver import connect
    from mlk8s.ray_gcs import GROUP_LABEL
    from mlk8s.scaling import PolicyState
    from mlk8s_airflow.ray_pool.loop import RayPoolLoop, RunReport
    from mlk8s_airflow.ray_pool.settings import RayPoolSettings

    workdir = Path(tempfile.mkdtemp(prefix="mlk8s-raypool-"))
    pool = LocalRayPool(workdir / "pool")
    pool.adopt(cluster)
    before = {r.node_id for r in pool.running().workers}

    def size() -> int:
        return sum(1 for r in pool.running().workers if r.spec.labels.get(GROUP_LABEL) == GROUP["name"])

    settings = RayPoolSettings.parse(
        {
            "groups": [GROUP],
            "actuator": "local",
            "ray_address": cluster.address,
            "local_pool_dir": str(pool.state_dir),
            "pool": POOL,
            "policy": {"scale_down_window_s": WINDOW_S, "cpus_per_task": 1.0},
            "interval_s": INTERVAL_S,
        }
    )
    say(
        f"Ray pool scaling: the sensor's loop sizes worker group '{GROUP['name']}' (max {GROUP['max_workers']} "
        f"nodes of {GROUP['cpus_per_worker']} CPU) of the local Ray pool from the queue of Airflow pool '{POOL}'"
    )
    print(
        f"    policy: scale_down_window_s={WINDOW_S:g} (demo-sized; default 60), a cycle every {INTERVAL_S:g} s; the "
        "demo stands in for the scheduler and workers (queued, running) and marks tasks done via the REST API",
        flush=True,
    )
    conn_env = "AIRFLOW_CONN_AIRFLOW_API_DEFAULT"
    saved = os.environ.get(conn_env)
    narrator = Narrator(size)
    result: dict[str, Any] = {"ok": False}
    try:
        # The DAG must be in the metadata database for the API to trigger it (what the dag-processor does).
        subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], check=True, capture_output=True)
        cluster.enable_auth_in_this_process()  # this process drives the Ray work: the pool's token
        with api_server(Path(airflow_home), workdir) as (base, passwords), connect(cluster.address, None):
            os.environ[conn_env] = json.dumps(
                {"conn_type": "http", "host": base, "login": READER, "password": passwords[READER]}
            )
            api = Api(base, passwords[OPERATOR])
            loop = RayPoolLoop(settings, run_key=f"demo/{secrets.token_hex(4)}")
            report = RunReport(state=PolicyState(), seq=0)
            pool_before = size()

            run_id, task_ids = api.trigger()
            say(
                f"The queue grows: run {run_id} of '{DAG_ID}' triggered through the REST API, its "
                f"{len(task_ids)} tasks queued in pool '{POOL}'"
            )
            stand_in_for_the_scheduler(run_id, task_ids, "queued")
            report = cycles_until(loop, report, narrator, lambda: size() > pool_before, GROW_CYCLES, "growing")

            say(f"The tasks run: each submits {WORK_S:g} s of 1-CPU Ray work to group '{GROUP['name']}'")
            stand_in_for_the_scheduler(run_id, task_ids, "running")

            @ray.remote(num_cpus=1, label_selector={GROUP_LABEL: GROUP["name"]})
            def work(seconds: float) -> str:
                time.sleep(seconds)
                return str(ray.get_runtime_context().get_node_id())

            refs = {work.remote(WORK_S): task_id for task_id in task_ids}
            ran_on: set[str] = set()

            def finished() -> bool:
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
                if done:
                    ran_on.update(n[:8] for n in ray.get(done))
                    api.finish(run_id, [refs.pop(ref) for ref in done])
                return not refs

            report = cycles_until(loop, report, narrator, finished, int(WORK_TIMEOUT_S / INTERVAL_S), "the work")
            print(
                f"    all {len(task_ids)} tasks done (marked success via the REST API); their Ray work ran on "
                f"node(s) {', '.join(sorted(ran_on))}",
                flush=True,
            )

            say(f"The queue has drained: idle pool nodes go once no backlog has asked for them for {WINDOW_S:g} s")
            report = cycles_until(loop, report, narrator, lambda: size() <= pool_before, DRAIN_CYCLES, "shrinking")
            took = time.monotonic() - narrator.started
            pool_after = size()
            ok = narrator.peaks["pool"] > pool_before and pool_after == pool_before
            result = {
                "ok": ok,
                "queue_peak": narrator.peaks["queued"],
                "pool_before": pool_before,
                "pool_peak": narrator.peaks["pool"],
                "pool_after": pool_after,
                "cycles": report.seq,
                "seconds": round(took, 1),
                "decisions": narrator.decisions,
            }
            say(
                f"Ray pool summary: queue of {result['queue_peak']} task(s) in pool '{POOL}' -> pool {pool_before} -> "
                f"{result['pool_peak']} -> {pool_after} real Ray worker node(s), {report.seq} sensor cycles, "
                f"{took:.0f} s" + ("" if ok else "  (NOT the expected grow-and-shrink)")
            )
            loop.close()
    finally:
        info = pool.info()
        for record in info.workers if info else ():
            if record.node_id not in before:
                with contextlib.suppress(Exception):
                    pool.remove_worker(record.node_id, force=True)
        if saved is None:
            os.environ.pop(conn_env, None)
        else:
            os.environ[conn_env] = saved
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main() -> int:
    """Standalone: the demo's Airflow home (migrated, pool ``ray`` set) and a fresh local Ray cluster."""
    home = REPO / ".airflow"
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    home.mkdir(parents=True, exist_ok=True)
    for args in (["db", "migrate"], ["pools", "set", POOL, "4", "Tasks that run on the Ray worker pool"]):
        subprocess.run([sys.executable, "-m", "airflow", *args], check=True, stdout=subprocess.DEVNULL)

    from mlk8s.local_ray import LocalRayCluster

    ray_tmp = Path(tempfile.mkdtemp(prefix="mlk8s-rp-", dir="/tmp"))
    try:
        with LocalRayCluster(ray_tmp, head_cpus=2) as cluster:
            return 0 if run(cluster, home)["ok"] else 1
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
