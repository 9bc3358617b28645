"""The mlk8s AirflowPlugin, found through Airflow's plugins folder (``plugins/``).

It registers the operator extra links (so the UI can show them for serialized DAGs).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlk8s_airflow.operators.preprocessing import RayDashboardLink


class Mlk8sPlugin(AirflowPlugin):
    name = "mlk8s"
    operator_extra_links = [RayDashboardLink()]
