"""The demo's scaling segment: Airflow's queue grows and drains, and the Ray pool follows with real nodes.

What is real: the Airflow API server (a subprocess on the demo's AIRFLOW_HOME, SimpleAuthManager, a JWT per
client), the sensor's loop (``RayPoolLoop.cycle``: queue counts over ``/api/v2``, Ray's state from the GCS,
the policy, the local actuator), the Ray worker nodes it starts and stops (``ray start`` processes of the
demo's ``LocalRayCluster``), and the Ray work that runs on them. What the demo stands in for: the scheduler
and the workers. No scheduler runs here, so the demo itself moves the task instances of DAG
``ray_pool_demo_queue`` (pool ``ray``) queued -> running -> success in the metadata database, and submits
the Ray work those tasks stand for. Every figure printed is read back from the API or from Ray.

The policy runs with a demo-sized scale-down window (``WINDOW_S`` instead of the default 60 s); everything
else is the policy's default. ``run(cluster, airflow_home)`` is what ``scripts/demo.py`` calls;
``python scripts/demo_ray_pool.py`` sets up Airflow and a Ray cluster itself and runs the same segment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlk8s.local_ray import LocalRayCluster
    from mlk8s_airflow.triggers.ray_pool import CycleResult

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "ray_pool_demo_queue"
POOL = "ray"
GROUP: dict[str, Any] = {"name": "cpu", "min_workers": 0, "max_workers": 2, "cpus_per_worker": 1}
#: Demo-sized scale-down window (the policy's default is 60 s): idle nodes go once no backlog has asked for them
#: this long.
WINDOW_S = 20.0
INTERVAL_S = 2.0
#: How long the Ray work of one task runs (one 1-CPU Ray task each).
WORK_S = 4.0
API_USER = "mlk8s_ray_pool"
API_START_TIMEOUT_S = 90.0
#: After the queue drains: the window, plus time to stop the nodes, plus slack for a loaded machine.
DRAIN_TIMEOUT_S = WINDOW_S + 45.0
WORK_TIMEOUT_S = 90.0


class DemoError(RuntimeError):
    """The segment could not show what it claims; the message says what happened instead."""


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def api_server(airflow_home: Path, workdir: Path) -> Iterator[tuple[str, str]]:
    """Airflow's API server on ``airflow_home`` in a subprocess; yields (base URL, password of API_USER).

    The sensor's user is a viewer with a password generated here (file mode 0600, in ``workdir``), so the
    demo never reads or prints the admin's password.
    """
    password = secrets.token_urlsafe(24)
    passwords = workdir / "passwords.json"
    fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({API_USER: password}, fh)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{API_USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    }
    port = free_port()
    log_path = workdir / "api-server.log"
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "airflow.api_fastapi.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, password
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def quiet_info_logs(names: Sequence[str] = ("airflow", "mlk8s", "mlk8s_airflow")) -> Iterator[None]:
    """The narrative below says what the loop's INFO lines say; warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def wait_healthy(base: str, log_path: Path, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else "(no log)"
            raise DemoError(f"the Airflow API server at {base} did not answer within {timeout_s:.0f} s:\n{tail}")
        time.sleep(0.5)


def check_airflow_home(airflow_home: Path) -> None:
    """The ORM in this process and the API server must use the same metadata database."""
    from airflow.configuration import AIRFLOW_HOME

    if Path(AIRFLOW_HOME).resolve() != airflow_home.resolve():
        raise DemoError(
            f"this process's Airflow uses AIRFLOW_HOME={AIRFLOW_HOME}, not {airflow_home}: set AIRFLOW_HOME "
            "before airflow is imported so the demo and its API server share one database"
        )


def create_demo_run() -> tuple[str, list[str]]:
    """A fresh run of the demo DAG, its task instances not yet queued."""
    import pendulum
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    bag = DagBag(str(REPO / "dags" / f"{DAG_ID}.py"))
    if bag.import_errors or DAG_ID not in bag.dags:
        raise DemoError(f"cannot load dags/{DAG_ID}.py: {bag.import_errors or 'no such DAG'}")
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    run_id = f"ray_pool_demo__{pendulum.now('UTC').format('YYYYMMDDTHHmmss')}"
    with create_session() as session:
        # An earlier demo killed mid-way must not leave its tasks in the queue this one measures.
        session.query(TaskInstance).filter(
            TaskInstance.dag_id == DAG_ID, TaskInstance.state.in_(["scheduled", "queued", "running", "deferred"])
        ).update({TaskInstance.state: "failed"}, synchronize_session=False)
        session.query(DagRun).filter(DagRun.dag_id == DAG_ID, DagRun.state == DagRunState.RUNNING).update(
            {DagRun.state: DagRunState.FAILED}, synchronize_session=False
        )
        session.flush()
        dag = SerializedDagModel.get_dag(DAG_ID, session=session)
        if dag is None:
            raise DemoError(f"DAG {DAG_ID} is not in the metadata database after syncing dags/{DAG_ID}.py")
        now = pendulum.now("UTC")
        dag.create_dagrun(
            run_id=run_id,
            logical_date=None,
            data_interval=None,
            run_after=now,
            conf=None,
            run_type=DagRunType.MANUAL,
            state=DagRunState.RUNNING,
            triggered_by=DagRunTriggeredByType.TEST,
            triggering_user_name=None,
            start_date=now,
            session=session,
        )
        session.flush()
        task_ids = sorted(ti.task_id for ti in session.query(TaskInstance).filter(TaskInstance.run_id == run_id))
    return run_id, task_ids


def set_states(run_id: str, task_ids: Sequence[str], state: str) -> None:
    """What the scheduler (queued) and a worker (running, success) would write; the sensor sees it via REST."""
    import pendulum
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    now = pendulum.now("UTC")
    with create_session() as session:
        query = session.query(TaskInstance).filter(
            TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id, TaskInstance.task_id.in_(task_ids)
        )
        for ti in query:
            ti.state = state
            if state == "queued":
                ti.queued_dttm = now
            elif state == "running":
                ti.start_date = now
            elif state in ("success", "failed"):
                ti.end_date = now


def finish_run(run_id: str, ok: bool) -> None:
    """Leave nothing of the demo in the queue: unfinished tasks fail, the run gets its final state."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        for ti in session.query(TaskInstance).filter(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id):
            if ti.state not in ("success", "failed"):
                ti.state = "failed"
        for dr in session.query(DagRun).filter(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id):
            dr.state = "success" if ok else "failed"


def pool_nodes(cluster: LocalRayCluster) -> list[str]:
    """Alive worker nodes of the demo group, as the GCS reports them (the head is never part of the pool)."""
    from mlk8s_airflow.hooks.ray_demand import GROUP_LABEL

    return sorted(n.node_id for n in cluster.nodes() if not n.head and n.labels.get(GROUP_LABEL) == GROUP["name"])


class Narrator:
    """Prints a cycle when the queue, Ray's demand or the decision changed; counts the quiet ones."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.last: tuple[Any, ...] | None = None
        self.quiet = 0
        self.decisions: list[dict[str, Any]] = []

    def cycle(self, result: CycleResult, pool_after: int) -> None:
        point = result.point
        decision = result.decisions[0]
        reason = decision.reason
        for node_id in decision.remove:  # full Ray node ids are 56 hex digits; the actuator prints 8
            reason = reason.replace(node_id, node_id[:8])
        key = (point["queued"], point["running"], point["ray_pending"], decision.current, decision.target, pool_after)
        self.decisions.append(
            {
                "t_s": round(time.monotonic() - self.started, 1),
                "queued": point["queued"],
                "running": point["running"],
                "ray_pending": point["ray_pending"],
                "pool": decision.current,
                "target": decision.target,
                "pool_after": pool_after,
                "reason": decision.reason,
            }
        )
        if key == self.last:
            self.quiet += 1
            return
        if self.quiet:
            print(f"    ({self.quiet} more cycle(s), nothing changed)", flush=True)
            self.quiet = 0
        self.last = key
        t = time.monotonic() - self.started
        print(
            f"    [{t:5.1f} s] Airflow pool '{POOL}': {point['queued']} queued/scheduled, {point['running']} running"
            f" | Ray: {point['ray_pending']} pending request(s), {decision.current} pool node(s)",
            flush=True,
        )
        print(f"              decision {decision.current} -> {decision.target}: {reason}", flush=True)
        for applied in result.applied:
            print(f"              local actuator: {applied.note}", flush=True)
        if result.applied:
            print(f"              Ray now reports {pool_after} node(s) in group '{GROUP['name']}'", flush=True)

    def flush(self) -> None:
        if self.quiet:
            print(f"    ({self.quiet} more cycle(s), nothing changed)", flush=True)
            self.quiet = 0


def run(cluster: LocalRayCluster, airflow_home: str | os.PathLike[str]) -> dict[str, Any]:
    """Grow the Ray pool for a queue in Airflow pool ``ray`` and shrink it when the queue drains; see the module
    docstring. Returns what happened (``ok``: the pool grew and came back to its size before)."""
    import ray

    from mlk8s.scaling import PolicyState
    from mlk8s_airflow.actuators.local import register_cluster, unregister_cluster
    from mlk8s_airflow.hooks.ray_demand import GROUP_LABEL
    from mlk8s_airflow.triggers.ray_pool import RayPoolLoop, RayPoolSettings

    home = Path(airflow_home)
    started = time.monotonic()
    check_airflow_home(home)
    settings = RayPoolSettings(
        groups=(GROUP,),
        actuator="local",
        ray_address=cluster.address,
        pool=POOL,
        policy={"scale_down_window_s": WINDOW_S, "cpus_per_task": 1.0},
        interval_s=INTERVAL_S,
    )
    policy = settings.policy_config
    say(
        f"Ray pool scaling: the sensor's loop sizes worker group '{GROUP['name']}' (min {GROUP['min_workers']}, "
        f"max {GROUP['max_workers']}, {GROUP['cpus_per_worker']} CPU each) from the queue of Airflow pool '{POOL}'"
    )
    print(
        f"    policy: scale_down_window_s={policy.scale_down_window_s:g} (demo-sized; default 60), "
        f"backlog_grace_workers={policy.backlog_grace_workers} (default), cpus_per_task={policy.cpus_per_task:g}; "
        f"a cycle every {INTERVAL_S:g} s",
        flush=True,
    )
    print(
        "    the demo stands in for the scheduler and workers: it moves the task instances of DAG "
        f"'{DAG_ID}' queued -> running -> success and runs their Ray work; the loop sees the queue only "
        "through Airflow's REST API",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="mlk8s-raypool-"))
    before_nodes = set(cluster.worker_ids())
    conn_env = "AIRFLOW_CONN_AIRFLOW_API_DEFAULT"
    saved_conn = os.environ.get(conn_env)
    own_driver = not ray.is_initialized()
    run_id: str | None = None
    ok = False
    narrator = Narrator(started)
    result: dict[str, Any] = {"ok": False}
    try:
        with quiet_info_logs(), api_server(home, workdir) as (base, password):
            # While the API server boots: this process joins Ray as a driver (before any pool node exists, so
            # it attaches to the head, never to a node the sensor may remove) and creates the demo's DAG run.
            if own_driver:
                cluster.enable_auth_in_this_process()
                ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
            run_id, task_ids = create_demo_run()
            wait_healthy(base, workdir / "api-server.log", API_START_TIMEOUT_S)
            print(f"    Airflow API server up at {base} ({time.monotonic() - started:.0f} s)", flush=True)
            os.environ[conn_env] = json.dumps(
                {"conn_type": "http", "host": base, "login": API_USER, "password": password}
            )
            register_cluster(cluster)
            loop = RayPoolLoop(settings, run_key=f"demo/{run_id}")
            state = PolicyState()
            seq = 0

            def cycle() -> CycleResult:
                nonlocal state, seq
                seq += 1
                res = loop.cycle(state, seq)
                state = res.state
                narrator.cycle(res, len(pool_nodes(cluster)))
                return res

            pool_before = len(pool_nodes(cluster))
            print(f"    pool before: {pool_before} node(s) in group '{GROUP['name']}' (Ray's count)", flush=True)
            queue_peak = 0
            pool_peak = pool_before

            say(f"The queue grows: {len(task_ids)} task instances of run {run_id} queued in pool '{POOL}'")
            set_states(run_id, task_ids, "queued")
            res = cycle()
            queue_peak = max(queue_peak, res.point["queued"])
            pool_peak = max(pool_peak, len(pool_nodes(cluster)))
            if pool_peak <= pool_before:
                raise DemoError(f"the pool did not grow for the queue: {res.decisions[0].reason}")

            narrator.flush()
            say(f"The tasks run: each submits {WORK_S:g} s of 1-CPU Ray work to group '{GROUP['name']}'")
            set_states(run_id, task_ids, "running")

            @ray.remote(num_cpus=1, label_selector={GROUP_LABEL: GROUP["name"]})
            def ray_work(seconds: float) -> str:
                time.sleep(seconds)
                return str(ray.get_runtime_context().get_node_id())

            refs = {ray_work.remote(WORK_S): task_id for task_id in task_ids}
            # A task counts as started once its Ray work has: wait until Ray reports it (busy or pending).
            seen = time.monotonic() + 15.0
            while time.monotonic() < seen:
                ray_state = loop.ray_reader.read()
                if ray_state.pending_requests or any(n.busy for n in ray_state.nodes):
                    break
                time.sleep(0.2)
            ran_on: dict[str, str] = {}
            deadline = time.monotonic() + WORK_TIMEOUT_S
            while True:
                tick = time.monotonic()
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
                finished = [refs.pop(ref) for ref in done]
                for ref_task, node in zip(finished, ray.get(done), strict=True):
                    ran_on[ref_task] = node
                if finished:
                    set_states(run_id, finished, "success")
                if not refs:
                    break
                res = cycle()
                queue_peak = max(queue_peak, res.point["queued"])
                pool_peak = max(pool_peak, len(pool_nodes(cluster)))
                if time.monotonic() > deadline:
                    raise DemoError(f"the Ray work of {sorted(refs.values())} did not finish in {WORK_TIMEOUT_S:g} s")
                time.sleep(max(0.0, INTERVAL_S - (time.monotonic() - tick)))
            used = sorted({n[:8] for n in ran_on.values()})
            print(f"    all {len(ran_on)} tasks done; their Ray work ran on node(s) {', '.join(used)}", flush=True)

            narrator.flush()
            say(
                "The queue has drained: idle pool nodes go once no backlog has asked for them "
                f"for {WINDOW_S:g} s (the scale-down window)"
            )
            drained_at = time.monotonic()
            while True:
                tick = time.monotonic()
                cycle()
                if len(pool_nodes(cluster)) <= pool_before:
                    break
                if time.monotonic() - drained_at > DRAIN_TIMEOUT_S:
                    raise DemoError(f"the idle pool did not shrink within {DRAIN_TIMEOUT_S:g} s of the queue draining")
                time.sleep(max(0.0, INTERVAL_S - (time.monotonic() - tick)))
            narrator.flush()
            pool_after = len(pool_nodes(cluster))
            took = time.monotonic() - started
            ok = pool_peak > pool_before and pool_after == pool_before
            result = {
                "ok": ok,
                "queue_peak": queue_peak,
                "pool_before": pool_before,
                "pool_peak": pool_peak,
                "pool_after": pool_after,
                "cycles": seq,
                "seconds": round(took, 1),
                "decisions": narrator.decisions,
            }
            say(
                f"Ray pool summary: queue of {queue_peak} task(s) in pool '{POOL}' -> pool {pool_before} -> "
                f"{pool_peak} -> {pool_after} real Ray worker node(s), {seq} sensor cycles, {took:.0f} s"
                + ("" if ok else "  (NOT the expected grow-and-shrink)")
            )
    finally:
        narrator.flush()
        unregister_cluster(cluster)
        for extra in set(cluster.worker_ids()) - before_nodes:
            with contextlib.suppress(Exception):
                cluster.remove_worker(extra, force=True)
        if own_driver and ray.is_initialized():
            ray.shutdown()
        if saved_conn is None:
            os.environ.pop(conn_env, None)
        else:
            os.environ[conn_env] = saved_conn
        if run_id is not None:
            with contextlib.suppress(Exception):
                finish_run(run_id, ok)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main() -> int:
    """Standalone: the demo's Airflow home (migrated, pool ``ray`` set) and a fresh local Ray cluster."""
    home = REPO / ".airflow"
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
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
