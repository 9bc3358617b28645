"""What a run needs before the components start: the metadata DB, the users, the pool ``ray``, the connections.

Run as ``python -m local_airflow.provision SPEC_JSON`` in the deployment's Airflow environment (Airflow reads
its configuration once per process, so it runs in a process of its own). It is deployment set-up, not task
code, so it uses Airflow's own Python API and the ORM. Everything is an upsert: running it twice is fine.
Prints one JSON line: the passwords file and the admin's and the API user's passwords.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _upsert_connection(session: Any, conn_id: str, fields: dict[str, Any]) -> None:
    from airflow.models import Connection

    existing = session.query(Connection).filter(Connection.conn_id == conn_id).one_or_none()
    if existing is not None:
        session.delete(existing)
        session.flush()
    extra = fields.pop("extra", None)
    session.add(Connection(conn_id=conn_id, extra=json.dumps(extra) if extra else None, **fields))


def provision(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow.configuration import write_default_airflow_configuration_if_needed

    # First, as the `airflow` command does: a new home gets its airflow.cfg with the fernet key and the JWT
    # secret that every component must share (a component that found none would make up its own, and the
    # api-server would then refuse the tokens the scheduler gives its tasks).
    write_default_airflow_configuration_if_needed()

    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.models.pool import Pool
    from airflow.utils import db
    from airflow.utils.session import create_session

    from mlk8s_airflow.names import AIRFLOW_API_CONN_ID, RAY_CONN_ID
    from mlk8s_airflow.setup import ray_pool

    db.initdb()
    # Generates (once) and writes the users' passwords where `airflow standalone` keeps them.
    create_auth_manager().init()
    passwords = SimpleAuthManager.get_passwords()
    admin, api_user = spec["admin_user"], spec["api_user"]
    with create_session() as session:
        pool = ray_pool(spec["pool_slots"])  # the deployment's init step creates the same pool
        Pool.create_or_update_pool(
            pool.name, pool.slots, pool.description, include_deferred=pool.include_deferred, session=session
        )
        ray = spec["ray_connection"]
        _upsert_connection(
            session,
            RAY_CONN_ID,
            {"conn_type": "generic", "host": ray["host"], "port": ray["port"], "description": ray["description"]},
        )
        _upsert_connection(
            session,
            AIRFLOW_API_CONN_ID,
            {
                "conn_type": "http",
                "host": spec["base_url"],
                "login": api_user,
                "password": passwords[api_user],
                "description": "Airflow's REST API, read by the Ray pool sensor as a viewer",
            },
        )
    return {
        "passwords_file": SimpleAuthManager.get_generated_password_file(),
        "admin_password": passwords[admin],
    }


if __name__ == "__main__":
    print(json.dumps(provision(json.loads(sys.argv[1]))))
