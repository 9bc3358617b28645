"""DAGs whose XComs the UI pages' tests read: a Ray pool sensor that records decisions and errors and then
fails, and a preprocessing task's result. Both write the shapes the real sensor and operator write (the pages
against the real training operator are tested with the training fixture DAGs)."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import DAG, task

START = pendulum.datetime(2025, 1, 1)

with DAG("ui_ray_pool", schedule=None, start_date=START, catchup=False, tags=["test"]) as ui_ray_pool:

    @task(task_id="size_ray_pool", retries=0)
    def size_ray_pool(ti=None) -> None:  # type: ignore[no-untyped-def]
        now = time.time()
        history = [
            {"t": now - 60, "queued": 4, "running": 0, "pool": 0, "target": 2, "reason": "scale up 0 -> 2"},
            {"t": now - 30, "queued": 0, "running": 2, "pool": 2, "target": 2, "reason": "hold 2"},
            {"t": now - 5, "queued": 0, "running": 0, "pool": 2, "target": 0, "reason": "scale down <idle>"},
        ]
        ti.xcom_push(key="ray_pool_history", value=history)
        ti.xcom_push(key="ray_pool_errors", value=[{"t": now - 1, "message": "GCS at 127.0.0.1:1 unreachable"}])
        raise RuntimeError("the Ray pool is unreachable")

    size_ray_pool()

with DAG("ui_preprocessing", schedule=None, start_date=START, catchup=False, tags=["test"]) as ui_preprocessing:

    @task(task_id="preprocess")
    def preprocess() -> dict:
        time.sleep(1)
        return {
            "output_uri": "/data/out",
            "input_rows": 1000,
            "output_rows": 990,
            "filtered_rows": 10,
            "duration_s": 2.0,
        }

    preprocess()
