"""What the browser tests run against: the local Airflow of ``make up`` (its own launcher, in a home and on a port
of the test's own), Debian's headless chromium driven by Playwright, and Airflow's REST API to check what the
browser did. Screenshots go to ``tests/browser/artifacts/`` (git-ignored), kept after the run.

Chromium is ``/usr/bin/chromium`` from Debian's package (``make chromium`` installs it; ``make test`` runs that
first); Playwright never downloads a browser of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlk8s.net import free_port
from tests.browser.airflow_client import ADMIN, AirflowApi, LocalAirflow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UP_TIMEOUT_S = 600


def _launcher(command: str, home: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    argv = [sys.executable, "-m", "local_airflow", command, "--home", str(home), "--port", str(port)]
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=UP_TIMEOUT_S)


@pytest.fixture(scope="module")
def airflow_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    """What ``make up`` starts (api-server with the UI, scheduler, dag-processor, triggerer, the Ray pool).

    Per module, not per session: stopped as soon as the browser tests are done, so the tiers after them do not
    share the 2 cores with a running Airflow and its Ray pool (the cluster tier's waits failed under that load).
    """
    home = tmp_path_factory.mktemp("make_up") / ".airflow"
    port = free_port()
    started = time.monotonic()
    up = _launcher("up", home, port)
    try:
        assert up.returncode == 0, f"make up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        took = time.monotonic() - started
        state = json.loads((home / "up" / "up.json").read_text())
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())[ADMIN]
        assert password in up.stdout, "make up must print the admin's password"
        yield LocalAirflow(state["url"], password, home, took, AirflowApi(state["url"], password))
    finally:
        down = _launcher("down", home, port)
        print(down.stdout, down.stderr, file=sys.stderr)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium under Playwright's sync API, which keeps an asyncio loop running in this thread while it is
    open: per module, so later tiers' ``asyncio.run`` do not meet it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install -y chromium) first")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any, airflow_up: LocalAirflow) -> Iterator[Any]:
    """One tab, logged in through Airflow's login page as the admin ``make up`` created."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # The UI loads its translations and data after the page: generous on a loaded machine.
    context.set_default_timeout(120_000)
    tab = context.new_page()
    tab.goto(airflow_up.url + "/")
    tab.get_by_label("Username").fill(ADMIN)
    tab.get_by_label("Password").fill(airflow_up.password)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(airflow_up.url + "/")
    yield tab
    context.close()


@pytest.fixture(scope="session")
def screenshot() -> Callable[[Any, str], Path]:
    def take(target: Any, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        target.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed step leaves a screenshot of the tab it failed in: artifacts/failed-<test>.png."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    tab = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and tab is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"failed-{item.name}.png"), full_page=True)
