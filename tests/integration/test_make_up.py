"""What ``make up`` starts, used as a user does: the real api-server, scheduler, dag-processor and triggerer, the
local Ray pool, and nightly_retrain triggered through the REST API with no logical date until it succeeds.

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

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "ray-pool")
RUN_TIMEOUT_S = 1200


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
    state = json.loads((airflow_up["home"] / "up" / "ray" / "state.json").read_text())
    assert f"{ray['host']}:{ray['port']}" == state["address"]
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


def test_up_twice_keeps_what_runs(airflow_up: dict[str, Any]) -> None:
    run_dir = airflow_up["home"] / "up"
    before = {name: json.loads((run_dir / f"{name}.pid.json").read_text())["pid"] for name in COMPONENTS}
    again = launcher("up", airflow_up["home"], airflow_up["port"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "every component was running already" in again.stdout
    after = {name: json.loads((run_dir / f"{name}.pid.json").read_text())["pid"] for name in COMPONENTS}
    assert after == before


def _skip_catch_up_runs(api: Api) -> None:
    """Unpausing a nightly DAG also schedules its latest interval (catchup=False); this test only wants its own."""
    for run in api.get("/api/v2/dags/nightly_retrain/dagRuns")["dag_runs"]:
        if run["run_type"] == "scheduled" and run["state"] in ("queued", "running"):
            api.client.patch(f"/api/v2/dags/nightly_retrain/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


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


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_down_stops_everything_it_started(airflow_up: dict[str, Any]) -> None:
    run_dir = airflow_up["home"] / "up"
    pids = [json.loads((run_dir / f"{name}.pid.json").read_text())["pid"] for name in COMPONENTS]
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
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", airflow_up["port"])) != 0  # nobody answers on the port any more
