"""The mlk8s AirflowPlugin, found through the package's ``airflow.plugins`` entry point (pyproject.toml).

It registers the operator extra links (so the UI can show them for serialized DAGs) and the "Ray pool" page,
a plot of queue length vs pool size with the reason of every scaling decision.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlk8s_airflow.links import RayDashboardLink
from mlk8s_airflow.ui.ray_pool import EXTERNAL_VIEWS as RAY_POOL_VIEWS
from mlk8s_airflow.ui.ray_pool import FASTAPI_APP as RAY_POOL_APP


class Mlk8sPlugin(AirflowPlugin):
    name = "mlk8s"
    operator_extra_links = [RayDashboardLink()]
    fastapi_apps = [RAY_POOL_APP]
    external_views = RAY_POOL_VIEWS
