"""Operator extra links: from a task to the Ray dashboard, and from a training or preprocessing task to its page.

Airflow 3 computes a link on the worker when the task ends and keeps it as an XCom (``xcom_key``), which the
UI reads. Kept apart from the operators, so the plugin loads without KubernetesPodOperator.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from mlk8s_airflow.ui import urls

DASHBOARD_XCOM_KEY = "ray_dashboard_url"


class RayDashboardLink(BaseOperatorLink):
    """A link from the task to the Ray dashboard of the cluster its pipeline ran on."""

    name = "Ray dashboard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=DASHBOARD_XCOM_KEY)
        return str(url) if url else ""


class TrainingPageLink(BaseOperatorLink):
    """A link from a training task to its training page (loss curve, checkpoints, resumes, relaunches)."""

    name = "Training page"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return urls.task_page_url(urls.TRAINING_PAGE, ti_key)


class PreprocessingPageLink(BaseOperatorLink):
    """A link from a preprocessing task to its preprocessing page (rows, rate, the Ray pool while it ran)."""

    name = "Preprocessing page"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return urls.task_page_url(urls.PREPROCESSING_PAGE, ti_key)
