"""The mlk8s AirflowPlugin: the operators' extra links and the pages (training, preprocessing, Ray pool).

Airflow's plugins-folder loader imports every ``.py`` file under ``plugins/``; ``plugins/.airflowignore`` keeps
it to this file, so loading the plugin imports neither KubernetesPodOperator, torch nor Ray (a test guards it).
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
