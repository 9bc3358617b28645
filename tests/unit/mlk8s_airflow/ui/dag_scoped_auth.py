"""An auth manager for the pages' tests: Airflow's SimpleAuthManager, except that a user listed in
``MLK8S_TEST_DAG_SCOPES`` (JSON: user -> DAG ids) may read only those DAGs. The real API server loads it by
its dotted path, and the pages must ask it per DAG, as they would ask FAB or Keycloak."""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class DagScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        scopes: dict[str, list[str]] = json.loads(os.environ.get("MLK8S_TEST_DAG_SCOPES", "{}"))
        if user.username in scopes and (details is None or details.id not in scopes[user.username]):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
