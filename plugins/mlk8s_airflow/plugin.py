"""The mlk8s AirflowPlugin, found through the package's ``airflow.plugins`` entry point (pyproject.toml): the
operators' extra links and the pages (training, preprocessing, Ray pool).

Loading it imports the links and the pages' mount only: neither KubernetesPodOperator, torch nor Ray (a test
guards it). A deployment that also points ``[core] plugins_folder`` at ``plugins/`` (make up, the demo) loads it
once all the same: ``plugins/.airflowignore`` keeps Airflow's folder loader out of the package, which would
import every file there as a bare top-level module.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlk8s_airflow.links import PreprocessingPageLink, RayDashboardLink, TrainingPageLink
from mlk8s_airflow.ui.mount import EXTERNAL_VIEWS, FASTAPI_APP


class Mlk8sPlugin(AirflowPlugin):
    name = "mlk8s"
    operator_extra_links = [RayDashboardLink(), TrainingPageLink(), PreprocessingPageLink()]
    fastapi_apps = [FASTAPI_APP]
    external_views = EXTERNAL_VIEWS
