"""Ray pool autoscaler: one deferrable sensor that sizes the shared Ray worker pool for the whole day.

It counts the task instances queued, scheduled, running and deferred in the Airflow pool ``ray`` (where the
preprocessing tasks run) through the REST API, reads Ray's pending demand, and resizes the pool: the KubeRay
RayCluster ``mlk8s-ray`` on Kubernetes, real worker nodes of the local Ray pool (``make up``, ``make demo``) on
the local backend. It waits in the triggerer, holding no worker slot. Each decision and its reason is in the
task log; the time series of queue length vs pool size is in the XCom ``ray_pool_history``, the loop's errors
in ``ray_pool_errors``, both on the "Ray pool" page.

A run lasts ``run_for_s`` (just under a day), so the history restarts daily and a new run picks up where the
pool is. This file only wires the sensor; the policy is ``mlk8s.scaling``, the worker-group schema of the
``groups`` Param comes from the one definition of a worker group (``mlk8s_airflow.ray_pool.settings``).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag

from mlk8s_airflow.ray_pool.settings import worker_groups_schema
from mlk8s_airflow.sensors.ray_pool import RayPoolSensor

# Read once at parse time (cheap): the deployment's backend decides the default actuator.
LOCAL = os.environ.get("AIRFLOW__MLK8S__BACKEND", "kubernetes") == "local"

# The worker groups of helm-values/raycluster-values.yaml; locally, small nodes on this machine.
KUBERAY_GROUPS = [
    {"name": "cpu", "min_workers": 0, "max_workers": 8, "cpus_per_worker": 4, "memory_per_worker": 16 * 2**30},
    {
        "name": "gpu",
        "min_workers": 0,
        "max_workers": 2,
        "cpus_per_worker": 8,
        "gpus_per_worker": 1,
        "memory_per_worker": 32 * 2**30,
    },
]
LOCAL_GROUPS = [{"name": "cpu", "min_workers": 0, "max_workers": 2, "cpus_per_worker": 1}]


@dag(
    dag_id="ray_pool_autoscaler",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlk8s", "ray", "autoscaling"],
    default_args={"retries": 3, "retry_delay": pendulum.duration(minutes=1)},
    # Params arrive in the sensor as lists/numbers, not their string form.
    render_template_as_native_obj=True,
    params={
        "actuator": Param(
            "local" if LOCAL else "kuberay-cooperate",
            enum=["local", "kuberay-cooperate", "kuberay-own"],
            description="local: nodes on this machine; kuberay-cooperate: raise minReplicas beside KubeRay's "
            "autoscaler; kuberay-own: in-tree autoscaling off, set replicas and delete idle workers.",
        ),
        "groups": Param(
            LOCAL_GROUPS if LOCAL else KUBERAY_GROUPS,
            **worker_groups_schema(),
            description="Worker groups and their limits (names = the RayCluster's groupNames).",
        ),
        "queue_pool": Param("ray", type="string", minLength=1, description="Airflow pool whose tasks need Ray."),
        "raycluster_name": Param("mlk8s-ray", type="string", minLength=1),
        "namespace": Param("mlk8s", type="string", minLength=1),
        "scale_down_window_s": Param(
            300, type="number", minimum=0, description="Backlog must stay low this long before workers go."
        ),
        "cpus_per_task": Param(1, type="number", minimum=0, description="CPUs one queued Airflow task needs."),
        "interval_s": Param(15, type="number", minimum=1, maximum=600, description="Seconds between cycles."),
        "run_for_s": Param(
            86_100, type="number", minimum=10, description="How long one run sizes the pool (default < 1 day)."
        ),
    },
    doc_md=__doc__,
)
def ray_pool_autoscaler() -> None:
    RayPoolSensor(
        task_id="size_ray_pool",
        actuator="{{ params.actuator }}",
        groups="{{ params.groups }}",  # type: ignore[arg-type]  # rendered to a list (native templates)
        queue_pool="{{ params.queue_pool }}",
        raycluster_name="{{ params.raycluster_name }}",
        namespace="{{ params.namespace }}",
        policy={
            "scale_down_window_s": "{{ params.scale_down_window_s }}",
            "cpus_per_task": "{{ params.cpus_per_task }}",
        },
        interval_s="{{ params.interval_s }}",  # type: ignore[arg-type]
        run_for_s="{{ params.run_for_s }}",  # type: ignore[arg-type]
    )


ray_pool_autoscaler()
