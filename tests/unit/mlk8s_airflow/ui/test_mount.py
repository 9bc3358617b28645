"""How the plugin mounts the pages: the app is built on the first request, not when the plugin is imported."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from mlk8s_airflow.ui import mount


def test_the_app_is_not_imported_until_a_request_arrives() -> None:
    code = "import sys; import mlk8s_airflow.ui.mount; print('mlk8s_airflow.ui.app' in sys.modules, 'fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_the_first_request_builds_the_app_and_is_served_by_it() -> None:
    app = mount.LazyApp()
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/ray-pool",
        "raw_path": b"/ray-pool",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("t", 80),
        "client": ("c", 1),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401  # Airflow's auth runs first: no credential, no page


def test_menu_entries_are_relative_so_the_ui_base_href_applies() -> None:
    assert all(not view["href"].startswith("/") for view in mount.EXTERNAL_VIEWS)
    assert mount.FASTAPI_APP["url_prefix"] == "/mlk8s"
