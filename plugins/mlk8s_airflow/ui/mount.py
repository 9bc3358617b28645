"""How the plugin puts the pages into Airflow: one app mounted at ``/mlk8s`` and two entries in the UI's menu.

Every Airflow process imports the plugin, but only the API server serves the pages, so the FastAPI app (and
Airflow's API security modules, seconds to import) is built on the first request, not at import.
"""

from __future__ import annotations

from typing import Any

from mlk8s_airflow.ui import urls


class LazyApp:
    """An ASGI app that imports the real one (:mod:`mlk8s_airflow.ui.app`) on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from mlk8s_airflow.ui.app import app

            self._app = app
        await self._app(scope, receive, send)


#: For the AirflowPlugin's ``fastapi_apps``.
FASTAPI_APP = {"app": LazyApp(), "url_prefix": f"/{urls.MOUNT}", "name": "mlk8s pages"}

#: For the AirflowPlugin's ``external_views``: menu entries shown in an iframe of the UI. The hrefs are
#: relative, so the UI's ``<base href>`` (its ``[api] base_url``) puts them under the same base path.
EXTERNAL_VIEWS = [
    {
        "name": "Ray pool",
        "href": f"{urls.MOUNT}/{urls.RAY_POOL_PAGE}",
        "destination": "nav",
        "url_route": "mlk8s-ray-pool",
        "category": "browse",
    },
    {
        "name": "ML tasks",
        "href": f"{urls.MOUNT}/",
        "destination": "nav",
        "url_route": "mlk8s-tasks",
        "category": "browse",
    },
]
