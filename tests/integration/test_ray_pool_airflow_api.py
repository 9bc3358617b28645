"""The REST-API queue reader against Airflow's real API app (SimpleAuthManager, SQLite, served by uvicorn),
and the ray_pool_autoscaler DAG end to end: its sensor reads that queue and resizes a real local Ray cluster.

The app runs in its own process with its own AIRFLOW_HOME, because Airflow reads its configuration once
per process. The fixture puts task instances into known states with the ORM (that is test set-up, the
reader itself only speaks HTTP), then the hook must count them per state, per pool, across DAG runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlk8s.net import free_port
from mlk8s_airflow.hooks.airflow_api import AirflowApiError, AirflowApiHook

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.airflow]

DAG_FILE = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import dag, task

    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1))
    def ray_pool_queue():
        for i in range(6):
            task(task_id=f"prep_{i}", pool="ray")(lambda: None)()
        task(task_id="elsewhere", pool="other")(lambda: None)()

    ray_pool_queue()
    """
)

# Two DAG runs, so counting must work across runs; "elsewhere" is in another pool and must not count.
SETUP = textwrap.dedent(
    """
    import os, pendulum
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.pool import Pool
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]), "dags-folder", None)
    states = {
        "r1": ["queued", "queued", "scheduled", "running", "deferred", "success"],
        "r2": ["queued", "running", "running", None, "failed", "up_for_retry"],
    }
    with create_session() as s:
        Pool.create_or_update_pool("ray", slots=8, description="ray", include_deferred=True, session=s)
        Pool.create_or_update_pool("other", slots=2, description="other", include_deferred=False, session=s)
        dag = SerializedDagModel.get_dag("ray_pool_queue", session=s)
        for run_id, wanted in states.items():
            now = pendulum.now("UTC")
            dag.create_dagrun(run_id=run_id, logical_date=None, data_interval=None, run_after=now,
                conf=None, run_type=DagRunType.MANUAL, state=DagRunState.RUNNING, triggered_by=None,
                triggering_user_name=None, start_date=now, session=s)
            s.flush()
            tis = {ti.task_id: ti for ti in s.query(TI).filter(TI.run_id == run_id)}
            for i, state in enumerate(wanted):
                tis[f"prep_{i}"].state = state
            tis["elsewhere"].state = "queued"
            tis["prep_0"].pool_slots = 2 if run_id == "r1" else 1
    """
)

SERVE = textwrap.dedent(
    """
    import sys, uvicorn
    from airflow.api_fastapi.app import create_app
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    (home / "dags" / "ray_pool_queue.py").write_text(DAG_FILE)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "reader:viewer,operator:op",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-secret-" + "x" * 64,
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", SETUP], env=env, check=True, capture_output=True)
    port = free_port("127.0.0.1")
    log = (home / "api.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"API server did not start: {(home / 'api.log').read_text()[-3000:]}")
            time.sleep(0.5)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        yield {
            "base": base,
            "login": "reader",
            "password": passwords["reader"],
            "operator_password": passwords["operator"],
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _hook(monkeypatch: pytest.MonkeyPatch, api: dict[str, str], password: str | None = None) -> AirflowApiHook:
    conn = {"conn_type": "http", "host": api["base"], "login": api["login"], "password": password or api["password"]}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_TEST", json.dumps(conn))
    return AirflowApiHook("airflow_api_test", attempts=2, backoff_s=0.05)


def test_counts_task_instances_of_the_pool_by_state_across_runs(
    monkeypatch: pytest.MonkeyPatch, airflow_api: dict[str, str]
) -> None:
    hook = _hook(monkeypatch, airflow_api)
    counts = hook.count_task_instances("ray")
    assert counts == {"scheduled": 1, "queued": 3, "running": 3, "deferred": 1}
    # The other pool's queued tasks (one per run) are counted there, not in "ray".
    assert hook.count_task_instances("other", ["queued"]) == {"queued": 2}


def test_reads_pool_slots_weighted_by_pool_slots(monkeypatch: pytest.MonkeyPatch, airflow_api: dict[str, str]) -> None:
    slots = _hook(monkeypatch, airflow_api).get_pool_slots("ray")
    assert slots.slots == 8
    assert slots.queued_slots == 4  # r1/prep_0 takes 2 slots, r1/prep_1 and r2/prep_0 one each
    assert slots.running_slots == 3
    assert slots.scheduled_slots == 1
    assert slots.deferred_slots == 1
    assert slots.open_slots == 8 - 4 - 3 - 1  # include_deferred: deferred tasks hold their slot


def test_reads_when_a_dag_runs_next(monkeypatch: pytest.MonkeyPatch, airflow_api: dict[str, str]) -> None:
    # The fixture DAG has no schedule: no next run to pre-warm for (the route and field exist, though).
    assert _hook(monkeypatch, airflow_api).next_dagrun_times(["ray_pool_queue"]) == {"ray_pool_queue": None}


def test_unknown_pool_names_the_fix(monkeypatch: pytest.MonkeyPatch, airflow_api: dict[str, str]) -> None:
    with pytest.raises(AirflowApiError, match="pool 'no-such-pool' does not exist"):
        _hook(monkeypatch, airflow_api).get_pool_slots("no-such-pool")


def test_wrong_password_is_a_clear_error_not_a_retry_loop(
    monkeypatch: pytest.MonkeyPatch, airflow_api: dict[str, str]
) -> None:
    with pytest.raises(AirflowApiError, match="refused the credentials of connection 'airflow_api_test'"):
        _hook(monkeypatch, airflow_api, password="wrong").count_task_instances("ray")


def test_expired_token_is_renewed(monkeypatch: pytest.MonkeyPatch, airflow_api: dict[str, str]) -> None:
    hook = _hook(monkeypatch, airflow_api)
    hook.count_task_instances("ray", ["queued"])
    hook._token = "not-a-valid-token"
    assert hook.count_task_instances("ray", ["queued"]) == {"queued": 3}


# --- the DAG end to end (last in this module: it changes the "ray" pool's task states) ------------------------


def _set_state(api: dict[str, str], run_id: str, task_id: str, state: str) -> None:
    token = httpx.post(
        f"{api['base']}/auth/token", json={"username": "operator", "password": api["operator_password"]}
    ).json()["access_token"]
    response = httpx.patch(
        f"{api['base']}/api/v2/dags/ray_pool_queue/dagRuns/{run_id}/taskInstances/{task_id}",
        json={"new_state": state},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.ray
def test_dag_grows_the_pool_for_queued_tasks_and_shrinks_it_when_they_drain(
    monkeypatch: pytest.MonkeyPatch, airflow_api: dict[str, str], airflow_db: Path, ray_cluster: Any, tmp_path: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from mlk8s.local_ray.pool import POOL_ENV, LocalRayPool
    from mlk8s_airflow.ray_pool.history import HISTORY_XCOM_KEY

    conn = {"conn_type": "http", "host": airflow_api["base"], "login": "reader", "password": airflow_api["password"]}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_DEFAULT", json.dumps(conn))
    host, port = ray_cluster.address.rsplit(":", 1)
    monkeypatch.setenv(
        "AIRFLOW_CONN_RAY_DEFAULT", json.dumps({"conn_type": "generic", "host": host, "port": int(port)})
    )
    # The session's cluster, served as the local pool the DAG's local actuator finds through MLK8S_LOCAL_RAY_POOL.
    pool = LocalRayPool(tmp_path / "pool")
    before = {r.node_id for r in pool.adopt(ray_cluster).workers}
    monkeypatch.setenv(POOL_ENV, str(pool.state_dir))

    def added() -> set[str]:
        return {r.node_id for r in pool.running().workers} - before

    drained = threading.Event()
    helper_errors: list[BaseException] = []

    def drain_when_the_worker_is_up() -> None:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not added():
                time.sleep(0.5)
            # Everything in pool "ray" finishes: the backlog (3 queued + 1 scheduled) and the tasks that were
            # running or deferred (while Airflow says they run, the policy holds their workers).
            finishing = [("r1", "prep_0"), ("r1", "prep_1"), ("r1", "prep_2"), ("r2", "prep_0")]
            finishing += [("r1", "prep_3"), ("r1", "prep_4"), ("r2", "prep_1"), ("r2", "prep_2")]
            for run_id, task_id in finishing:
                _set_state(airflow_api, run_id, task_id, "success")
            drained.set()
        except BaseException as exc:
            helper_errors.append(exc)

    helper = threading.Thread(target=drain_when_the_worker_is_up, daemon=True)
    helper.start()
    dag = DagBag(str(Path(__file__).resolve().parents[2] / "dags" / "ray_pool_autoscaler.py")).dags[
        "ray_pool_autoscaler"
    ]
    try:
        dr = dag.test(
            run_conf={
                "actuator": "local",
                "groups": [{"name": "big", "min_workers": 0, "max_workers": 1, "cpus_per_worker": 2}],
                "queue_pool": "ray",
                "cpus_per_task": 2,
                "scale_down_window_s": 4,
                "interval_s": 1,
                "run_for_s": 20,
            }
        )
        helper.join(timeout=5)
    finally:
        for extra in added():
            pool.remove_worker(extra, force=True)

    assert drained.is_set(), helper_errors
    ti = next(t for t in dr.get_task_instances() if t.task_id == "size_ray_pool")
    assert str(ti.state) == "success"
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id="ray_pool_autoscaler", run_id=dr.run_id, task_id="size_ray_pool", key=HISTORY_XCOM_KEY)
            .one()
        )
        history = XComModel.deserialize_value(row)
    sizes = [(p["queued"], p["pool"], p["target"]) for p in history]
    # A backlog of four 2-CPU tasks -> 2-CPU workers at once (capped at max 1); after it drains and the window
    # passes, the idle worker is removed.
    assert sizes[0] == (4, 0, 1), history[0]
    assert (0, 1, 0) in sizes, sizes
    assert sizes[-1] == (0, 0, 0), sizes
    assert any("scale down 1 -> 0" in p["reason"] for p in history)
    assert added() == set()
