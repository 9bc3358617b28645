"""The mlk8s AirflowPlugin, found through Airflow's plugins folder (``plugins/``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class Mlk8sPlugin(AirflowPlugin):
    name = "mlk8s"
