"""``PreprocessingOperator``: a driver pod that runs a Ray Data pipeline on the shared Ray pool.

The pod runs ``python -m mlk8s.preprocessing --input ... --output ... [--pipeline ...]`` against the Ray
cluster named by an Airflow connection (``RAY_ADDRESS``; the KubeRay head service in a cluster, a local Ray
cluster in the demo). Ray's token authentication stays on: the token reaches the pod from key
``ray_token_secret_key`` of the Kubernetes Secret ``ray_token_secret`` (``mlk8s-ray-auth``/``auth_token``, as
docs/deploy.md creates it; locally, from the worker's ``RAY_AUTH_TOKEN``), never from DAG code, logs or XCom.
The task defers by default while its driver pod runs, freeing the worker slot.

Output is committed exactly once by the pod, to a Delta Lake table: the task's partition is replaced in one
commit carrying an application transaction derived from the task try (:func:`transaction_of`), so the
relaunch that follows an evicted driver returns the landed commit, an Airflow retry replaces the partition
rather than duplicating it, and a zombie driver is fenced. Tasks join the Airflow
pool ``ray`` by default: that queue is what the Ray pool sensor scales from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset
from kubernetes.client import models as k8s

from mlk8s import compat
from mlk8s_airflow.links import DASHBOARD_XCOM_KEY, PreprocessingPageLink, RayDashboardLink
from mlk8s_airflow.names import (
    COMPONENT_LABEL,
    PRIORITY_PREEMPTIBLE,
    RAY_AUTH_SECRET,
    RAY_AUTH_SECRET_KEY,
    RAY_CONN_ID,
    RAY_POOL,
    STATELESS,
)
from mlk8s_airflow.operators.pod import PodTaskOperator
from mlk8s_airflow.placement import pool_affinity

if TYPE_CHECKING:
    from airflow.sdk import Context


def preprocessing_arguments(
    *,
    input_uri: str,
    output_uri: str,
    pipeline: str | Mapping[str, Any] | None,
    partition: Mapping[str, Any] | None = None,
    txn: tuple[str, int] | None = None,
) -> list[str]:
    """The exec array for ``python -m mlk8s.preprocessing``; an inline pipeline dict travels as JSON.

    ``partition`` becomes ``--partition KEY=VALUE`` (the CLI checks keys and values are path-safe); ``txn``
    (app id, version) the application transaction that makes the commit exactly once.
    """
    if not str(input_uri).strip():
        raise ValueError("input_uri is empty: set it to the documents to preprocess (a path or s3://, gs:// URI).")
    if not str(output_uri).strip():
        raise ValueError("output_uri is empty: set it to the Delta table the features should be committed to.")
    args = ["--input", str(input_uri), "--output", str(output_uri)]
    if pipeline:
        args += ["--pipeline", pipeline if isinstance(pipeline, str) else json.dumps(dict(pipeline), sort_keys=True)]
    if partition is not None and not isinstance(partition, Mapping):
        raise ValueError(f"partition must be a mapping such as {{'run_key': '...'}}, got {partition!r}")
    for key, value in (partition or {}).items():
        args += ["--partition", f"{key}={value}"]
    if txn is not None:
        args += ["--txn-app-id", txn[0], "--txn-version", str(int(txn[1]))]
    return args


def transaction_of(context: Context) -> tuple[str, int]:
    """The Delta application transaction of this task try: one app id per task run (dag, task, map index,
    run), its try number as the version. A relaunch after a disruption stays in the same try (same version:
    an already-landed commit is returned, not redone); a retry or a cleared rerun is a new try (it replaces
    the partition), and a zombie of an older try is fenced."""
    ti = context["ti"]
    app_id = f"mlk8s/{ti.dag_id}/{ti.task_id}/{ti.map_index}/{context['run_id']}".replace(" ", "_")
    return app_id, int(ti.try_number)


class PreprocessingOperator(PodTaskOperator):
    """Run a Ray Data preprocessing pipeline from a driver pod.

    :param input_uri: documents to read (Parquet, JSON lines, raw text/HTML; a path or pyarrow.fs URI).
    :param output_uri: the Delta table the output is committed to (exactly once per partition and try).
    :param partition: the partition this task replaces, e.g. ``{"run_key": "{{ run_id | replace(':', '_') }}"}``
        (templated; values must be path-safe); ``None`` replaces the whole table.
    :param pipeline: a pipeline spec (a dict, inline JSON, or a file/URI); ``None`` runs the default document
        pipeline (clean text, features, embeddings, empty documents filtered out).
    :param ray_conn_id: Airflow connection naming the Ray head (host, port; extra ``dashboard_url``).
    :param ray_token_secret: the Kubernetes Secret (in the pod's namespace) holding the Ray auth token.
    :param ray_token_secret_key: the key of that Secret holding the token.
    :param output_asset: the Airflow Asset updated when the output is committed.
    """

    template_fields = (*PodTaskOperator.template_fields, "input_uri", "output_uri", "pipeline", "partition")
    template_fields_renderers = {**PodTaskOperator.template_fields_renderers, "pipeline": "json"}
    operator_extra_links = (RayDashboardLink(), PreprocessingPageLink())

    def __init__(
        self,
        *,
        input_uri: str,
        output_uri: str,
        pipeline: str | Mapping[str, Any] | None = None,
        partition: Mapping[str, Any] | None = None,
        ray_conn_id: str = RAY_CONN_ID,
        ray_token_secret: str = RAY_AUTH_SECRET,
        ray_token_secret_key: str = RAY_AUTH_SECRET_KEY,
        output_asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cmds", ["python", "-m", "mlk8s.preprocessing"])
        kwargs.setdefault("pool", RAY_POOL)
        kwargs.setdefault("affinity", pool_affinity(STATELESS, required=False))
        kwargs.setdefault("priority_class_name", PRIORITY_PREEMPTIBLE)
        kwargs.setdefault("deferrable", True)
        kwargs["labels"] = {COMPONENT_LABEL: "preprocessing", **(kwargs.get("labels") or {})}
        if output_asset is not None:
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), output_asset]
        super().__init__(**kwargs)
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.pipeline = pipeline
        self.partition = partition
        self.ray_conn_id = ray_conn_id
        self.ray_token_secret = ray_token_secret
        self.ray_token_secret_key = ray_token_secret_key
        self.output_asset = output_asset

    def _ray_env(self, context: Context | None) -> tuple[list[k8s.V1EnvVar], str | None]:
        from mlk8s_airflow.hooks.ray_connection import RayHook

        ray = RayHook(self.ray_conn_id).get_conn()  # the token stays out of the pod spec: the Secret carries it
        dashboard = ray.dashboard_url
        env = [
            k8s.V1EnvVar(name="RAY_ADDRESS", value=ray.address),
            k8s.V1EnvVar(name="RAY_AUTH_MODE", value="token"),
            k8s.V1EnvVar(
                name="RAY_AUTH_TOKEN",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(name=self.ray_token_secret, key=self.ray_token_secret_key)
                ),
            ),
            # The embedding model ships inside the image; never reach for a hub at run time.
            k8s.V1EnvVar(name="HF_HUB_OFFLINE", value="1"),
        ]
        return env, dashboard

    def execute(self, context: Context) -> Any:
        self.arguments = preprocessing_arguments(
            input_uri=self.input_uri,
            output_uri=self.output_uri,
            pipeline=self.pipeline,
            partition=self.partition,
            txn=transaction_of(context),
        )
        _, dashboard = self._ray_env(context)
        # Always pushed (empty when unknown) so the UI's link lookup finds a value rather than logging a 404.
        context["ti"].xcom_push(key=DASHBOARD_XCOM_KEY, value=str(dashboard or ""))
        return super().execute(context)

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The driver pod, with the Ray pool's address and the token's Secret in its main container's env."""
        env, _ = self._ray_env(context)
        names = {e.name for e in env}
        convert_env_vars = compat.get("kpo.convert_env_vars_or_raise_error")
        current = convert_env_vars(self.env_vars) if self.env_vars else []
        self.env_vars = [e for e in current if e.name not in names] + env
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def on_pod_succeeded(self, context: Context, result: Any) -> Any:
        if isinstance(result, dict):
            self.log.info(
                "mlk8s: preprocessing committed %s (delta version %s, partition %s): %s rows in, %s out, "
                "%s filtered, %.1f s",
                result.get("table_uri") or result.get("output_uri"),
                result.get("delta_version"),
                result.get("partition"),
                result.get("input_rows"),
                result.get("output_rows"),
                result.get("filtered_rows"),
                float(result.get("duration_s") or 0.0),
            )
            if self.output_asset is not None:
                context["outlet_events"][self.output_asset].extra = asset_extra(result)
        return result


def asset_extra(result: Mapping[str, Any]) -> dict[str, Any]:
    """What the output Asset's event carries: the table and the Delta version (and partition) a reader pins."""
    keys = ("table_uri", "delta_version", "partition", "output_rows", "content_hash", "output_uri", "manifest_uri")
    return {k: result.get(k) for k in keys}
