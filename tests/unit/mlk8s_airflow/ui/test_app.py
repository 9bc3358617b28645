"""The pages served by Airflow's real API server, with the mlk8s plugin loaded from plugins/, behind Airflow's
auth: no credential is refused, a user who may not read a DAG sees none of it, and every page lives under the
path of ``[api] base_url``. The data are real runs in the session's metadata DB (an evicted training run, a
failing Ray pool sensor, a preprocessing task), read by the server in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlk8s.net import free_port
from tests.unit.mlk8s_airflow.ui.charts import chart, markers, polyline
from tests.unit.mlk8s_airflow.ui.runs import FixtureRun

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

REPO = Path(__file__).resolve().parents[4]
BASE = "/airflow/"
START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def fixture_runs(
    evicted_training_run: FixtureRun, pool_sensor_run: FixtureRun, preprocessing_run: FixtureRun
) -> dict[str, FixtureRun]:
    return {"training": evicted_training_run, "pool": pool_sensor_run, "preprocessing": preprocessing_run}


@pytest.fixture(scope="module")
def server(fixture_runs: dict[str, FixtureRun], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("api_server")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}{BASE}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.unit.mlk8s_airflow.ui.dag_scoped_auth.DagScopedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "reader:viewer,outsider:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(work / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "ui-test-secret-" + "x" * 64,
        "MLK8S_TEST_DAG_SCOPES": json.dumps({"outsider": [fixture_runs["preprocessing"].dag_id]}),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    log = (work / "api-server.log").open("w")
    proc = subprocess.Popen(
        [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    root = f"http://127.0.0.1:{port}{BASE}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{root}api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"API server did not start: {(work / 'api-server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        passwords = json.loads((work / "passwords.json").read_text())
        tokens = {
            user: httpx.post(f"{root}auth/token", json={"username": user, "password": passwords[user]}).json()[
                "access_token"
            ]
            for user in ("reader", "outsider")
        }
        yield {"root": root, "tokens": tokens, "runs": fixture_runs}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def get(server: dict[str, Any], path: str, user: str | None = "reader", **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server['tokens'][user]}"} if user else {}
    return httpx.get(server["root"] + path, params=params, headers=headers, timeout=30)


def task_params(run: FixtureRun, task_id: str) -> dict[str, str]:
    return {"dag_id": run.dag_id, "run_id": run.run_id, "task_id": task_id}


def test_no_credential_is_refused_with_a_way_to_log_in(server: dict[str, Any]) -> None:
    for path, params in [
        ("mlk8s/", {}),
        ("mlk8s/training", task_params(server["runs"]["training"], "train")),
        ("mlk8s/ray-pool", {}),
    ]:
        response = get(server, path, user=None, **params)
        assert response.status_code == 401, (path, response.text)
        assert "Log in to Airflow" in response.text and f'href="{BASE}"' in response.text


def test_the_training_page_draws_the_real_evicted_run(server: dict[str, Any]) -> None:
    response = get(server, "mlk8s/training", **task_params(server["runs"]["training"], "train"))
    assert response.status_code == 200, response.text
    assert 'data-key="relaunches"><div class="k">relaunches</div><div class="v">1</div>' in response.text
    assert 'data-chart="loss"' in response.text
    # Links honour [api] base_url: back to the task in Airflow's UI, under the base path.
    assert f'href="{BASE}dags/train_sigterm/runs/' in response.text


def test_the_ui_session_cookie_is_enough(server: dict[str, Any]) -> None:
    """The UI's iframe sends Airflow's session cookie, not a bearer token."""
    response = httpx.get(
        server["root"] + "mlk8s/training",
        params=task_params(server["runs"]["training"], "train"),
        cookies={"_token": server["tokens"]["reader"]},
    )
    assert response.status_code == 200, response.text


def test_the_ray_pool_page_shows_the_failed_sensor_and_its_errors(server: dict[str, Any]) -> None:
    run = server["runs"]["pool"]
    response = get(server, "mlk8s/ray-pool", dag_id=run.dag_id)
    assert response.status_code == 200, response.text
    svg = chart(response.text, "ray-pool")
    assert len(polyline(svg, "pool")) == 5 and len(markers(svg, "error")) == 1
    assert "GCS at 127.0.0.1:1 unreachable" in response.text and "<b>failed</b>" in response.text
    assert "scale down &lt;idle&gt;" in response.text


def test_the_ray_pool_page_of_a_missing_dag_says_so(server: dict[str, Any]) -> None:
    response = get(server, "mlk8s/ray-pool", dag_id="no_such_dag")
    assert response.status_code == 200 and "There is no DAG &#x27;no_such_dag&#x27;" in response.text


def test_the_preprocessing_page_shows_the_pool_while_the_task_ran(server: dict[str, Any]) -> None:
    params = {
        **task_params(server["runs"]["preprocessing"], "preprocess"),
        "pool_dag_id": server["runs"]["pool"].dag_id,
    }
    response = get(server, "mlk8s/preprocessing", **params)
    assert response.status_code == 200, response.text
    assert '<div class="k">input rows</div><div class="v">1000</div>' in response.text
    svg = chart(response.text, "ray-pool")
    assert len(markers(svg, "task")) == 1 and len(polyline(svg, "pool")) >= 1


def test_an_unknown_task_instance_is_404_naming_it(server: dict[str, Any]) -> None:
    response = get(server, "mlk8s/training", dag_id="train_sigterm", run_id="nope", task_id="train")
    assert response.status_code == 404 and "No task instance train_sigterm / nope / train" in response.text


def test_a_user_without_dag_access_sees_nothing_of_it(server: dict[str, Any]) -> None:
    runs = server["runs"]
    assert get(server, "mlk8s/training", "outsider", **task_params(runs["training"], "train")).status_code == 403
    assert get(server, "mlk8s/ray-pool", "outsider", dag_id=runs["pool"].dag_id).status_code == 403
    index = get(server, "mlk8s/", "outsider")
    assert index.status_code == 200 and "train_sigterm" not in index.text
    assert "train_sigterm" in get(server, "mlk8s/", "reader").text
    # Its own DAG's page, but not the pool DAG's history it may not read.
    params = {**task_params(runs["preprocessing"], "preprocess"), "pool_dag_id": runs["pool"].dag_id}
    page = get(server, "mlk8s/preprocessing", "outsider", **params)
    assert page.status_code == 200 and "<polyline" not in page.text and "scale up" not in page.text


def test_airflow_serves_the_menu_entries_and_the_extra_link(server: dict[str, Any]) -> None:
    plugins = get(server, "api/v2/plugins").json()["plugins"]
    mlk8s = next(p for p in plugins if p["name"] == "mlk8s")
    assert {v["url_route"] for v in mlk8s["external_views"]} == {"mlk8s-ray-pool", "mlk8s-tasks"}
    assert {a["url_prefix"] for a in mlk8s["fastapi_apps"]} == {"/mlk8s"}
    run = server["runs"]["training"]
    links = get(server, f"api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/train/links").json()
    assert links["extra_links"]["Training page"].startswith("/mlk8s/training?dag_id=train_sigterm&run_id=")
