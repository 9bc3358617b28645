"""Every private or unstable member of Ray, Airflow and KubernetesPodOperator that mlk8s relies on, in one list.

An upgrade may remove or change such a member without notice. Listing each one here, with why we need it,
gives one place to look and one test (tests/unit/mlk8s/test_compat.py) that resolves every entry and fails
loudly, naming the member, when an upgrade removes one. Modules are resolved lazily (``pkgutil.resolve_name``),
so importing this module imports neither Ray nor Airflow.

Code outside this module never imports ``ray._raylet`` or another private path directly: it calls
:func:`get`. Private *methods* of classes we subclass (KPO's) are called on ``self``; they are listed here so
the test still catches their removal.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Member:
    path: str  # "module:attribute.chain" as pkgutil.resolve_name takes it
    why: str


MEMBERS: dict[str, Member] = {
    # -- Ray -------------------------------------------------------------------------------------------------
    "ray.AuthenticationTokenLoader": Member(
        "ray._raylet:AuthenticationTokenLoader", "drop Ray's per-process token cache after RAY_AUTH_TOKEN changes"
    ),
    "ray.Config": Member("ray._raylet:Config", "re-read RAY_AUTH_MODE after ray was imported"),
    "ray.gcs_pb2": Member("ray.core.generated.gcs_pb2", "the GCS node-info protos (GcsNodeInfo.GcsNodeState)"),
    "ray.gcs_service_pb2": Member("ray.core.generated.gcs_service_pb2", "GetAllNodeInfo requests to the GCS"),
    "ray.NodeInfoGcsServiceStub": Member(
        "ray.core.generated.gcs_service_pb2_grpc:NodeInfoGcsServiceStub",
        "read node state from the GCS with the token passed explicitly (mlk8s.ray_gcs)",
    ),
    "ray.autoscaler_pb2": Member(
        "ray.core.generated.autoscaler_pb2", "the GCS autoscaler-state protos (node status, drain reasons)"
    ),
    "ray.AutoscalerStateServiceStub": Member(
        "ray.core.generated.autoscaler_pb2_grpc:AutoscalerStateServiceStub",
        "pending demand, per-node idle state and idle-only drains (autoscaler v2's GCS service)",
    ),
    "ray.services": Member(
        "ray._private.services",
        "keep 127.0.0.1 as a node's and a cluster's address (resolve_ip_for_localhost), so a local cluster binds "
        "loopback only",
    ),
    "ray.services.resolve_ip_for_localhost": Member(
        "ray._private.services:resolve_ip_for_localhost", "the function mlk8s.local_ray.ray_start wraps"
    ),
    "ray.state": Member(
        "ray._private.state:state",
        "the autoscaler's cluster config (get_cluster_config, get_max_resources_from_cluster_config): the node "
        "sizes and the GPUs a pool can scale to, which a worker group scaled to zero does not show in "
        "ray.cluster_resources()",
    ),
    "ray.cli": Member("ray.scripts.scripts:main", "Ray's own `ray` command line, run by mlk8s.local_ray.ray_start"),
    # -- KubernetesPodOperator (methods of the class we subclass) --------------------------------------------
    "kpo._get_ti_pod_labels": Member(
        "airflow.providers.cncf.kubernetes.operators.pod:KubernetesPodOperator._get_ti_pod_labels",
        "the labels every pod of a task run carries: the training PDB's selector",
    ),
    "kpo._set_name": Member(
        "airflow.providers.cncf.kubernetes.operators.pod:KubernetesPodOperator._set_name",
        "KPO's pod-name normalisation, reused for locally run pods",
    ),
    "kpo.convert_env_vars_or_raise_error": Member(
        "airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters:convert_env_vars_or_raise_error",
        "normalise a task's env_vars (dict or V1EnvVar list) before adding the Ray variables",
    ),
    # -- Airflow internals used by the UI plugin ------------------------------------------------------------
    "airflow.XComModel": Member("airflow.models.xcom:XComModel", "read the XComs the UI pages draw"),
    "airflow.requires_access_dag": Member(
        "airflow.api_fastapi.core_api.security:requires_access_dag", "the UI pages honour Airflow's DAG access"
    ),
    "airflow.SessionDep": Member("airflow.api_fastapi.common.db.common:SessionDep", "a DB session in the UI app"),
    "airflow.DagAccessEntity": Member(
        "airflow.api_fastapi.auth.managers.models.resource_details:DagAccessEntity", "which DAG resource a page reads"
    ),
    "airflow.GetUserDep": Member(
        "airflow.api_fastapi.core_api.security:GetUserDep", "the UI pages' caller, from a bearer token or the UI cookie"
    ),
    "airflow.get_auth_manager": Member(
        "airflow.api_fastapi.app:get_auth_manager", "the UI pages' index lists only the DAGs a user may read"
    ),
    "airflow.TaskInstance": Member(
        "airflow.models.taskinstance:TaskInstance", "the state and times of the task a UI page shows"
    ),
    "airflow.DagRun": Member("airflow.models.dagrun:DagRun", "the Ray pool page shows the sensor's latest run"),
    "airflow.DagModel": Member("airflow.models.dag:DagModel", "the Ray pool page says when the sensor's DAG is paused"),
    "airflow.Pool": Member("airflow.models.pool:Pool", "the setup step reads which Airflow pools exist"),
}


class CompatError(ImportError):
    """A listed member is gone: the installed version of its package changed it."""


def get(name: str) -> Any:
    """The member registered as ``name``; raises :class:`CompatError` naming it and its package when gone."""
    member = MEMBERS[name]
    try:
        return pkgutil.resolve_name(member.path)
    except (ImportError, AttributeError, ValueError) as exc:
        raise CompatError(
            f"{member.path} ({name}: {member.why}) is not available in the installed version: {exc}. "
            "Pin the version mlk8s supports (constraints.txt) or update include/mlk8s/compat.py"
        ) from exc
