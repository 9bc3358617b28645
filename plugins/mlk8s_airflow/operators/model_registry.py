"""Evaluate-and-publish as pods: ``EvaluateModelOperator``, ``PublishModelOperator`` and the live model's report.

Both pods run ``python -m mlk8s.model_registry`` (the registry layout and the decision are documented there),
so reading models and moving the pointer happen where the storage credentials are, never on the Airflow
worker. The evaluation's result (metrics of both models, the decision and its reason) is the evaluate task's
XCom; the publish task owns the model Asset, so the Asset gets an event only when a model was published.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from mlk8s_airflow.names import COMPONENT_LABEL
from mlk8s_airflow.operators.pod import PodTaskOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

ENTRYPOINT = ["python", "-m", "mlk8s.model_registry"]


def _option_args(task_options: Mapping[str, Any]) -> list[str]:
    return [arg for key, value in sorted(task_options.items()) for arg in ("--task-option", f"{key}={value}")]


def evaluate_arguments(
    *,
    registry_uri: str,
    candidate_uri: str,
    data_uri: str | None,
    task_options: Mapping[str, Any],
    metric: str,
    goal: str,
    tolerance: float | str,
    force: bool | str,
    data_partition: Mapping[str, Any] | None = None,
    data_version: int | str | None = None,
) -> list[str]:
    """The exec array of ``python -m mlk8s.model_registry evaluate`` (one element per argument).

    ``data_partition`` and ``data_version`` are those training read (an empty version means the latest).
    """
    args = ["evaluate", "--registry", str(registry_uri), "--candidate", str(candidate_uri)]
    if data_uri:
        args += ["--data", str(data_uri)]
    for key, value in sorted((data_partition or {}).items()):
        args += ["--data-partition", f"{key}={value}"]
    if data_version is not None and str(data_version).strip():
        if not str(data_version).strip().isdigit():
            raise ValueError(f"data_version {data_version!r} is not a Delta table version: use an integer >= 0.")
        args += ["--data-version", str(data_version).strip()]
    args += ["--metric", metric, "--goal", goal, "--tolerance", str(tolerance), "--force", str(force).lower()]
    return [*args, *_option_args(task_options)]


def publish_arguments(
    *, registry_uri: str, candidate_uri: str, expect_live: str, run_key: str, task_options: Mapping[str, Any]
) -> list[str]:
    """The exec array of ``python -m mlk8s.model_registry publish``."""
    args = ["publish", "--registry", str(registry_uri), "--candidate", str(candidate_uri)]
    args += ["--expect-live", str(expect_live or "none"), "--run-key", str(run_key)]
    return [*args, *_option_args(task_options)]


class EvaluateModelOperator(PodTaskOperator):
    """Score a trained candidate and the published model on the same held-out rows; XCom = the verdict.

    :param registry_uri: the registry root (its ``published.json`` names the live model).
    :param candidate_uri: the training output to judge (``model.json`` + ``model.safetensors``).
    :param data_uri: the dataset the candidate trained on; its held-out rows are scored.
    :param data_partition: the partition of a Delta table ``data_uri`` training read, e.g. ``{"run_key": ...}``.
    :param data_version: the Delta table version training read (templated; empty: the latest).
    :param task_options: the ``--task-option`` values the candidate was trained with.
    :param force: publish without comparing (e.g. after the model's shapes changed on purpose).
    """

    template_fields = (
        *PodTaskOperator.template_fields,
        "registry_uri",
        "candidate_uri",
        "data_uri",
        "data_partition",
        "data_version",
        "tolerance",
        "force",
    )

    def __init__(
        self,
        *,
        registry_uri: str,
        candidate_uri: str,
        data_uri: str | None = None,
        data_partition: Mapping[str, Any] | None = None,
        data_version: int | str | None = None,
        task_options: Mapping[str, Any] | None = None,
        metric: str = "held_out_accuracy",
        goal: str = "max",
        tolerance: float | str = 0.0,
        force: bool | str = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cmds", ENTRYPOINT)
        kwargs["labels"] = {COMPONENT_LABEL: "model-registry", **(kwargs.get("labels") or {})}
        super().__init__(**kwargs)
        self.registry_uri = registry_uri
        self.candidate_uri = candidate_uri
        self.data_uri = data_uri
        self.data_partition = dict(data_partition or {})
        self.data_version = data_version
        self.task_options = dict(task_options or {})
        self.metric = metric
        self.goal = goal
        self.tolerance = tolerance
        self.force = force

    def execute(self, context: Context) -> Any:
        self.arguments = evaluate_arguments(
            registry_uri=self.registry_uri,
            candidate_uri=self.candidate_uri,
            data_uri=self.data_uri,
            data_partition=self.data_partition,
            data_version=self.data_version,
            task_options=self.task_options,
            metric=self.metric,
            goal=self.goal,
            tolerance=self.tolerance,
            force=self.force,
        )
        return super().execute(context)

    def on_pod_succeeded(self, context: Context, result: Any) -> Any:
        if isinstance(result, dict):
            self.log.info("mlk8s: evaluation: %s (%s)", result.get("decision"), result.get("reason"))
        return result


class PublishModelOperator(PodTaskOperator):
    """Make the candidate the live model (compare-and-swap against ``expect_live``) and emit the model Asset.

    :param expect_live: the live model's ``weights_sha256`` the candidate was evaluated against, or ``none``.
    :param model_asset: gets an event (extra: the live model) when the pointer names the candidate.
    """

    template_fields = (
        *PodTaskOperator.template_fields,
        "registry_uri",
        "candidate_uri",
        "expect_live",
        "run_key",
    )

    def __init__(
        self,
        *,
        registry_uri: str,
        candidate_uri: str,
        expect_live: str,
        run_key: str,
        task_options: Mapping[str, Any] | None = None,
        model_asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cmds", ENTRYPOINT)
        kwargs["labels"] = {COMPONENT_LABEL: "model-registry", **(kwargs.get("labels") or {})}
        if model_asset is not None:
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), model_asset]
        super().__init__(**kwargs)
        self.registry_uri = registry_uri
        self.candidate_uri = candidate_uri
        self.expect_live = expect_live
        self.run_key = run_key
        self.task_options = dict(task_options or {})
        self.model_asset = model_asset

    def execute(self, context: Context) -> Any:
        self.arguments = publish_arguments(
            registry_uri=self.registry_uri,
            candidate_uri=self.candidate_uri,
            expect_live=self.expect_live,
            run_key=self.run_key,
            task_options=self.task_options,
        )
        return super().execute(context)

    def on_pod_succeeded(self, context: Context, result: Any) -> Any:
        if isinstance(result, dict) and isinstance(result.get("live"), dict):
            live = result["live"]
            self.log.info(
                "mlk8s: live model %s (run %s) at %s%s",
                str(live.get("weights_sha256"))[:12],
                live.get("run_key"),
                live.get("model_dir"),
                "" if result.get("moved") else " (it was live already)",
            )
            if self.model_asset is not None:
                context["outlet_events"][self.model_asset].extra = {
                    k: live.get(k) for k in ("model_dir", "weights_sha256", "run_key", "metrics", "published_at")
                }
        return result


def live_model_report(evaluation: Mapping[str, Any] | None, publication: Mapping[str, Any] | None) -> dict[str, Any]:
    """Which model is live after a run: the published candidate, else the model the evaluation kept."""
    if not evaluation:
        raise ValueError("no evaluation result: the evaluate task pushed no XCom")
    if publication and publication.get("live"):
        live = dict(publication["live"])
        mine = True
    else:
        live = dict(evaluation.get("published") or {})
        mine = False
    return {
        "live": live or None,
        "candidate_published": mine,
        "decision": evaluation.get("decision"),
        "reason": evaluation.get("reason"),
        "candidate": evaluation.get("candidate"),
    }
