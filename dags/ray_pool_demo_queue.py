"""Demo only: a handful of tasks in the Airflow pool ``ray``, so the Ray pool autoscaler has a queue to size for.

``make demo`` (``scripts/demo_ray_pool.py``) triggers a run of this DAG through the REST API and, as no
scheduler runs in the demo, moves its task instances to queued and running itself and marks them done through
the API, while the Ray work they stand for runs on the local Ray pool; the autoscaler only sees them through
Airflow's REST API. Under ``make up`` (the real scheduler), trigger it a few times to watch
``ray_pool_autoscaler`` grow the pool and shrink it again. Each task only holds its pool slot for ``seconds``:
it stands for a Ray-bound task such as the preprocessing operator.
"""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import Param, dag, task

TASKS = 4


@dag(
    dag_id="ray_pool_demo_queue",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlk8s", "ray", "demo"],
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
    params={"seconds": Param(5, type="number", minimum=0, maximum=600, description="How long each task holds.")},
    doc_md=__doc__,
)
def ray_pool_demo_queue() -> None:
    @task(pool="ray")
    def hold(seconds: float) -> None:
        time.sleep(float(seconds))

    for i in range(TASKS):
        hold.override(task_id=f"ray_work_{i}")(seconds="{{ params.seconds }}")


ray_pool_demo_queue()
