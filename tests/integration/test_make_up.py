"""What ``make up`` starts, used as a user does: the real api-server, scheduler, dag-processor and triggerer, the
local Ray pool service; nightly_retrain triggered through the REST API with no logical date until it succeeds,
and ray_pool_autoscaler unpaused under the real triggerer, adding a Ray worker node for work queued in the
Airflow pool ``ray`` and removing it once idle, never while it is busy.

One local Airflow per module, in its own home and on a free port, started and stopped by the very launcher the
Makefile runs (``python -m local_airflow up|down``). Tests run in file order: the last one stops it all.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

# A step may wait for runs under the real scheduler (up to RUN_TIMEOUT_S) on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.ray, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
RUN_TIMEOUT_S = 1200
BUSY_WORKER = REPO / "tests" / "integration" / "ray_pool_busy_worker.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launcher(command: str, home: Path, port: int, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    return subprocess.run(
        [sys.executable, "-m", "local_airflow", command, "--home", str(home), "--port", str(port)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ray_pool(airflow_up: dict[str, Any]) -> Any:
    from mlk8s.local_ray.pool import LocalRayPool

    return LocalRayPool(airflow_up["home"] / "up" / "ray")


class Api:
    """Admin calls; reads are retried on a timeout (a busy shared machine can stall the one api-server worker)."""

    def __init__(self, base: str, password: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=120)
        token = self.client.post("/auth/token", json={"username": "admin", "password": password})
        token.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        for attempt in Retrying(
            stop=stop_after_attempt(4), retry=retry_if_exception_type(httpx.TransportError), reraise=True
        ):
            with attempt:
                response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def airflow_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("make_up") / "airflow"
    port = _free_port()
    started = time.monotonic()
    up = launcher("up", home, port)
    took = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        print(f"\nmake up started in {took:.0f} s:\n{up.stdout}", file=sys.stderr)
        yield {"home": home, "port": port, "base": f"http://127.0.0.1:{port}", "password": password, "up": up}
    finally:
        launcher("down", home, port, timeout=300)


def test_up_prints_the_url_the_login_and_how_long_it_took(airflow_up: dict[str, Any]) -> None:
    out = airflow_up["up"].stdout
    assert "Airflow is up in " in out and airflow_up["base"] in out
    assert f"admin / {airflow_up['password']}" in out
    assert "nightly_retrain (paused)" in out and "preprocess_on_demand (paused)" in out and "IMPORT ERROR" not in out
    home = airflow_up["home"]
    assert (home / "up" / "ray" / "auth_token").stat().st_mode & 0o077 == 0  # the token file is the user's only


def test_everything_a_run_needs_exists(airflow_up: dict[str, Any]) -> None:
    api = Api(airflow_up["base"], airflow_up["password"])
    pool = api.get("/api/v2/pools/ray")
    assert pool["slots"] == 4 and pool["include_deferred"] is True
    ray = api.get("/api/v2/connections/ray_default")
    assert f"{ray['host']}:{ray['port']}" == ray_pool(airflow_up).running().address
    rest = api.get("/api/v2/connections/airflow_api_default")
    assert rest["host"] == airflow_up["base"] and rest["login"] == "mlk8s-ray-pool"
    # The connection's user really can read the queue (what the Ray pool sensor does).
    password = json.loads((airflow_up["home"] / "simple_auth_manager_passwords.json.generated").read_text())
    viewer = httpx.post(
        f"{airflow_up['base']}/auth/token", json={"username": "mlk8s-ray-pool", "password": password["mlk8s-ray-pool"]}
    )
    assert viewer.status_code == 201


def test_bad_params_are_refused_before_a_run_exists(airflow_up: dict[str, Any]) -> None:
    api = Api(airflow_up["base"], airflow_up["password"])
    for conf, field in (({"epochs": -1}, "epochs"), ({"documents": 1.5}, "documents"), ({"tolerance": 2}, "tolerance")):
        response = api.client.post("/api/v2/dags/nightly_retrain/dagRuns", json={"logical_date": None, "conf": conf})
        assert response.status_code == 400 and f"param {field}" in response.text, response.text
    response = api.client.post(
        "/api/v2/dags/preprocess_on_demand/dagRuns", json={"logical_date": None, "conf": {"sample_fraction": 0}}
    )
    assert response.status_code == 400 and "sample_fraction" in response.text
    assert api.get("/api/v2/dags/nightly_retrain/dagRuns")["total_entries"] == 0


def _pids(airflow_up: dict[str, Any]) -> dict[str, int]:
    """Every process make up started: the components, and the Ray pool's nodes."""
    run_dir = airflow_up["home"] / "up"
    pids = {name: json.loads((run_dir / f"{name}.pid.json").read_text())["pid"] for name in COMPONENTS}
    return pids | {f"ray node {n.node_id[:8]}": n.pid for n in ray_pool(airflow_up).running().nodes}


def test_up_twice_keeps_what_runs(airflow_up: dict[str, Any]) -> None:
    before = _pids(airflow_up)
    again = launcher("up", airflow_up["home"], airflow_up["port"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "every component was running already" in again.stdout
    assert _pids(airflow_up) == before


def _skip_catch_up_runs(api: Api, dag_id: str = "nightly_retrain") -> None:
    """Unpausing a scheduled DAG also schedules its latest interval (catchup=False); a test only wants its own."""
    for run in api.get(f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]:
        if run["run_type"] == "scheduled" and run["state"] in ("queued", "running"):
            api.client.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


def test_nightly_retrain_triggered_through_the_rest_api_succeeds_under_the_scheduler(
    airflow_up: dict[str, Any], record_property: Any
) -> None:
    api = Api(airflow_up["base"], airflow_up["password"])
    started = time.monotonic()
    created = api.client.post(
        "/api/v2/dags/nightly_retrain/dagRuns",
        json={"logical_date": None, "conf": {"documents": 40, "epochs": 2}},
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    assert created.json()["logical_date"] is None
    assert api.client.patch("/api/v2/dags/nightly_retrain", json={"is_paused": False}).status_code == 200
    deadline = time.monotonic() + RUN_TIMEOUT_S
    state = "queued"
    while time.monotonic() < deadline:
        _skip_catch_up_runs(api)
        state = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            break
        time.sleep(5)
    took = time.monotonic() - started
    api.client.patch("/api/v2/dags/nightly_retrain", json={"is_paused": True})
    tis = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}/taskInstances")["task_instances"]
    summary = {t["task_id"]: (t["state"], t["try_number"]) for t in tis}
    assert state == "success", summary
    record_property("nightly_retrain_s", round(took))
    print(f"\nnightly_retrain (documents=40, epochs=2) succeeded in {took:.0f} s: {summary}", file=sys.stderr)
    assert all(try_number == 1 for _, try_number in summary.values()), summary  # no retry was spent

    live = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}/taskInstances/live_model/xcomEntries/return_value")
    report = live["value"]
    assert report["candidate_published"] is True and report["decision"] == "publish"
    pointer = airflow_up["home"] / "data" / "models" / "document_classifier" / "published.json"
    assert json.loads(pointer.read_text())["weights_sha256"] == report["live"]["weights_sha256"]
    # The task logs are served by the api-server from the same disk (the log servers are not started).
    log = api.client.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}/taskInstances/train/logs/1")
    assert log.status_code == 200 and "mlk8s: progress epoch=2/2" in log.text

    # The features: one Delta table partitioned by run_key, this run's partition committed at the version that
    # preprocessing reported and training was handed.
    from deltalake import DeltaTable

    from mlk8s_airflow.run_keys import run_key

    committed = api.get(
        f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}/taskInstances/preprocess/xcomEntries/return_value"
    )
    committed = committed["value"]
    table = DeltaTable(str(airflow_up["home"] / "data" / "features"))
    assert table.metadata().partition_columns == ["run_key"]
    assert table.version() == committed["delta_version"]
    mine = table.to_pyarrow_table(filters=[("run_key", "=", run_key(run_id))])
    assert mine.num_rows == committed["output_rows"] > 0
    assert set(table.to_pyarrow_table(columns=["run_key"]).column("run_key").to_pylist()) == {run_key(run_id)}
    for task_id in ("train", "evaluate"):  # both read this partition at that version
        rendered = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}/taskInstances/{task_id}")["rendered_fields"]
        assert rendered["data_partition"] == {"run_key": run_key(run_id)}, rendered
        assert str(rendered["data_version"]) == str(committed["delta_version"]), rendered


def _trigger(api: Api, dag_id: str, conf: dict[str, Any], logical_date: str | None = None) -> str:
    created = api.client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf})
    assert created.status_code == 200, created.text
    assert api.client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    return str(created.json()["dag_run_id"])


def _wait(what: str, check: Any, timeout_s: float, every_s: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


#: The autoscaler's Params for the test: short cycles and a short scale-down window, so an idle worker goes soon.
AUTOSCALER_CONF = {"interval_s": 3, "scale_down_window_s": 5, "run_for_s": 1200}
#: How long each of ray_pool_demo_queue's tasks holds its slot of the Airflow pool ``ray``: long enough for a
#: cycle of the sensor to see the tasks waiting for a slot and for a Ray node to start on a busy machine.
QUEUE_HOLD_S = 90
#: Runs of ray_pool_demo_queue queued at once: their tasks outnumber the pool's 4 slots, so some wait in
#: "scheduled" (the backlog the policy grows for; running tasks count as already placed on the pool).
QUEUE_RUNS = 2


def test_ray_pool_autoscaler_adds_a_worker_for_queued_work_and_removes_it_once_idle_never_busy(
    airflow_up: dict[str, Any], tmp_path: Path, record_property: Any
) -> None:
    api = Api(airflow_up["base"], airflow_up["password"])
    pool = ray_pool(airflow_up)

    def ray_workers() -> set[str]:
        """Ray's own node list (the GCS, through the pool service): the worker nodes alive now."""
        with pool.gcs() as gcs:
            return {node.node_id for node in gcs.nodes() if not node.head}

    assert ray_workers() == set()
    started = time.monotonic()
    # The run takes the slot of the schedule's next run, so unpausing starts no second sensor with the default
    # Params beside it (one killed while it starts a node would leave a node no pool record names).
    next_slot = api.get("/api/v2/dags/ray_pool_autoscaler")["next_dagrun_logical_date"]
    sizing = _trigger(api, "ray_pool_autoscaler", AUTOSCALER_CONF, logical_date=next_slot)

    def sizing_deferred() -> bool:
        """The sensor waits in the triggerer: work queued from now on is seen by its cycles."""
        _skip_catch_up_runs(api, "ray_pool_autoscaler")
        ti = api.get(f"/api/v2/dags/ray_pool_autoscaler/dagRuns/{sizing}/taskInstances/size_ray_pool")
        assert ti["state"] not in ("failed", "upstream_failed", "success"), ti
        return bool(ti["state"] == "deferred")

    _wait("the Ray pool sensor deferred to the triggerer", sizing_deferred, timeout_s=300)
    queues = [_trigger(api, "ray_pool_demo_queue", {"seconds": QUEUE_HOLD_S}) for _ in range(QUEUE_RUNS)]
    holder: subprocess.Popen[str] | None = None
    try:

        def grown() -> set[str]:
            _skip_catch_up_runs(api, "ray_pool_autoscaler")
            return ray_workers()

        added = _wait("a Ray worker node added for the queued tasks", grown, timeout_s=420)
        grew_in = time.monotonic() - started
        # A node is in Ray's node list a moment before the process that started it writes the pool's record (it
        # waits for the registration first): the record must follow within seconds. One that never does is a
        # node the pool cannot name or stop, a leak.
        _wait(
            f"the pool's record of the Ray worker nodes {sorted(added)} (a node it cannot name would leak)",
            lambda: added <= {node.node_id for node in pool.running().workers},
            timeout_s=30,
            every_s=0.5,
        )
        # Keep one added worker busy with Ray work past the end of the queue; it must stay while busy.
        busy = sorted(added)[0]
        holder = subprocess.Popen(
            [sys.executable, str(BUSY_WORKER), str(pool.state_dir), busy, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait("the busy task running on its worker", lambda: (tmp_path / "running").exists(), timeout_s=180)

        def queue_states() -> list[str]:
            return [api.get(f"/api/v2/dags/ray_pool_demo_queue/dagRuns/{run}")["state"] for run in queues]

        _wait("the queued tasks done", lambda: set(queue_states()) <= {"success", "failed"}, 600, every_s=5)
        assert queue_states() == ["success"] * QUEUE_RUNS
        # The queue is empty; well past the window and several cycles later the busy worker is still there.
        for _ in range(10):
            time.sleep(3)
            assert busy in ray_workers(), "a busy Ray worker node was removed"
        (tmp_path / "release").touch()
        out, err = holder.communicate(timeout=120)
        assert holder.returncode == 0 and out.strip() == busy, err[-3000:]

        gone = _wait("every worker node removed once idle", lambda: not ray_workers(), timeout_s=300)
        took = time.monotonic() - started
        assert gone
    finally:
        if holder is not None and holder.poll() is None:
            (tmp_path / "release").touch()
            holder.kill()
        api.client.patch("/api/v2/dags/ray_pool_autoscaler", json={"is_paused": True})
        api.client.patch("/api/v2/dags/ray_pool_demo_queue", json={"is_paused": True})
        api.client.patch(f"/api/v2/dags/ray_pool_autoscaler/dagRuns/{sizing}", json={"state": "failed"})
    record_property("ray_pool_grow_s", round(grew_in))
    print(f"\nray_pool_autoscaler: {sorted(added)} added in {grew_in:.0f} s, all gone by {took:.0f} s", file=sys.stderr)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_down_stops_everything_it_started(airflow_up: dict[str, Any]) -> None:
    run_dir = airflow_up["home"] / "up"
    pids = list(_pids(airflow_up).values())
    tree = []
    for pid in pids:
        try:
            tree += [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            pass
    down = launcher("down", airflow_up["home"], airflow_up["port"], timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped" in down.stdout
    assert [p for p in tree if _running(p)] == []
    assert list(run_dir.glob("*.pid.json")) == []
    assert ray_pool(airflow_up).info() is None
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", airflow_up["port"])) != 0  # nobody answers on the port any more
