"""Operator extra links. Kept apart from the operators so the plugin loads without KubernetesPodOperator."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

DASHBOARD_XCOM_KEY = "ray_dashboard_url"


class RayDashboardLink(BaseOperatorLink):
    """A link from the task to the Ray dashboard of the cluster its pipeline ran on."""

    name = "Ray dashboard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=DASHBOARD_XCOM_KEY)
        return str(url) if url else ""
