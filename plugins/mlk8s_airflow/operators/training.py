"""``TrainingOperator``: checkpointed torch training on a pod that survives eviction.

The pod runs ``python -m mlk8s.training``, which checkpoints every N steps, at each epoch end and on SIGTERM.
When Kubernetes evicts or preempts the pod (or, locally, the process is killed by a signal) the base
operator relaunches it with the same flags and training resumes from the last committed checkpoint: the
task try goes on, no Airflow retry is spent, and the final weights are the same as an uninterrupted run's.

Placement defaults are for stateful work: required affinity for the ``stateful`` pool and its toleration,
the ``mlk8s-critical`` PriorityClass, ``safe-to-evict: "false"`` for the cluster-autoscaler, a grace period
long enough for the emergency checkpoint, and (on Kubernetes) a PodDisruptionBudget for the task's pods from
its first launch to its end, across relaunches and deferrals. Every one is overridable. The task defers by
default: a training pod runs for hours, and a deferred task holds no worker slot meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset
from airflow.sdk.exceptions import TaskDeferred

from mlk8s_airflow.config import Backend, resolve_backend
from mlk8s_airflow.disruption_budget import budget_body, budget_name, create_budget, delete_budget
from mlk8s_airflow.links import TrainingPageLink
from mlk8s_airflow.names import COMPONENT_LABEL, PRIORITY_CRITICAL, STATEFUL
from mlk8s_airflow.operators.pod import PodDisrupted, PodTaskOperator
from mlk8s_airflow.placement import SAFE_TO_EVICT, pool_affinity, pool_tolerations

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Room for the emergency checkpoint after SIGTERM (the trainer only writes it if it fits).
TRAINING_GRACE_S = 120
_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def training_arguments(
    *,
    checkpoint_uri: str,
    output_uri: str,
    epochs: int | str,
    seed: int | str,
    checkpoint_every_steps: int | str,
    keep_last: int | str,
    termination_grace_seconds: float,
    data_uri: str | None = None,
    data_partition: Mapping[str, Any] | None = None,
    data_version: int | str | None = None,
    task: str | None = None,
    batch_size: int | str | None = None,
    lr: float | str | None = None,
    task_options: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The exec array for ``python -m mlk8s.training`` (one list element per argument: never a shell string).

    ``data_partition`` ({"run_key": ...}) and ``data_version`` select a partition and a version of a Delta table
    ``data_uri``; an empty ``data_version`` (a template that rendered to "") means the latest.
    """
    if not str(checkpoint_uri).strip():
        raise ValueError("checkpoint_uri is empty: set it to a path or URI that survives the pod (s3://, gs://).")
    if not str(output_uri).strip():
        raise ValueError("output_uri is empty: set it to where model.safetensors should be written.")
    args = [
        "--checkpoint-uri", str(checkpoint_uri),
        "--output-uri", str(output_uri),
        "--epochs", str(epochs),
        "--seed", str(seed),
        "--checkpoint-every-steps", str(checkpoint_every_steps),
        "--keep-last", str(keep_last),
        "--termination-grace-seconds", str(termination_grace_seconds),
    ]  # fmt: skip
    if data_uri:
        args += ["--data", str(data_uri)]
    for key, value in (data_partition or {}).items():
        if not _OPTION_KEY.match(str(key)):
            raise ValueError(f"data_partition key {key!r} is not a column name: use letters, digits, '_', '-'.")
        args += ["--data-partition", f"{key}={value}"]
    if data_version is not None and str(data_version).strip():
        if not str(data_version).strip().isdigit():
            raise ValueError(f"data_version {data_version!r} is not a Delta table version: use an integer >= 0.")
        args += ["--data-version", str(data_version).strip()]
    if (data_partition or (data_version is not None and str(data_version).strip())) and not data_uri:
        raise ValueError("data_partition and data_version select part of a Delta table: set data_uri too.")
    if task:
        args += ["--task", str(task)]
    if batch_size is not None:
        args += ["--batch-size", str(batch_size)]
    if lr is not None:
        args += ["--lr", str(lr)]
    for key, value in (task_options or {}).items():
        if not _OPTION_KEY.match(str(key)):
            raise ValueError(f"task_options key {key!r} is not a valid option name: use letters, digits, '_', '-'.")
        args += ["--task-option", f"{key}={value}"]
    return [*args, *map(str, extra_args)]


class TrainingOperator(PodTaskOperator):
    """Train a torch model on a pod, resuming from checkpoints through evictions.

    :param checkpoint_uri: where checkpoints live (a path or s3://, gs://, file:// URI). Keep it stable across
        relaunches and retries of the same run, e.g. ``.../{{ run_id }}``, so they resume rather than restart.
    :param output_uri: where ``model.safetensors`` and ``model.json`` are written.
    :param data_uri: training data: a Delta table, Parquet, or a preprocessing output, with ``embedding`` and
        ``label``; omitted, the built-in example trains on scikit-learn's bundled digits.
    :param data_partition: the partition of a Delta table to read, e.g. ``{"run_key": "{{ run_id }}"}``.
    :param data_version: the Delta table version to read (templated); default: the latest at the first start,
        then the version recorded in the checkpoint on every relaunch.
    :param task: ``package.module:Class`` of a ``mlk8s.training.TrainingTask`` (your model, data and step).
    :param model_asset: the Airflow Asset updated when a model is committed (its event's extra points at the
        model and the last checkpoint).
    :param create_pdb: on Kubernetes, protect the task's pods with a PodDisruptionBudget while the task runs.
    :param deferrable: wait for the pod in the triggerer (the default), freeing the worker slot.
    """

    template_fields = (
        *PodTaskOperator.template_fields,
        "checkpoint_uri",
        "output_uri",
        "data_uri",
        "data_partition",
        "data_version",
        "epochs",
        "seed",
        "task_options",
    )
    operator_extra_links = (TrainingPageLink(),)

    def __init__(
        self,
        *,
        checkpoint_uri: str,
        output_uri: str,
        data_uri: str | None = None,
        data_partition: Mapping[str, Any] | None = None,
        data_version: int | str | None = None,
        task: str | None = None,
        epochs: int | str = 20,
        seed: int | str = 0,
        checkpoint_every_steps: int = 200,
        keep_last: int = 3,
        batch_size: int | None = None,
        lr: float | None = None,
        task_options: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        model_asset: Asset | None = None,
        create_pdb: bool = True,
        max_disruptions: int = 10,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cmds", ["python", "-m", "mlk8s.training"])
        kwargs.setdefault("affinity", pool_affinity(STATEFUL, required=True))
        kwargs.setdefault("tolerations", pool_tolerations(STATEFUL))
        kwargs.setdefault("termination_grace_period", TRAINING_GRACE_S)
        kwargs.setdefault("priority_class_name", PRIORITY_CRITICAL)
        kwargs.setdefault("deferrable", True)
        kwargs["labels"] = {COMPONENT_LABEL: "training", **(kwargs.get("labels") or {})}
        kwargs["annotations"] = {SAFE_TO_EVICT: "false", **(kwargs.get("annotations") or {})}
        if model_asset is not None:
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), model_asset]
        super().__init__(max_disruptions=max_disruptions, **kwargs)
        self.checkpoint_uri = checkpoint_uri
        self.output_uri = output_uri
        self.data_uri = data_uri
        self.data_partition = dict(data_partition or {})
        self.data_version = data_version
        self.task = task
        self.epochs = epochs
        self.seed = seed
        self.checkpoint_every_steps = checkpoint_every_steps
        self.keep_last = keep_last
        self.batch_size = batch_size
        self.lr = lr
        self.task_options = dict(task_options or {})
        self.extra_args = list(extra_args)
        self.model_asset = model_asset
        self.create_pdb = create_pdb
        self._pdb_name: str | None = None

    def execute(self, context: Context) -> Any:
        self.arguments = training_arguments(
            checkpoint_uri=self.checkpoint_uri,
            output_uri=self.output_uri,
            epochs=self.epochs,
            seed=self.seed,
            checkpoint_every_steps=self.checkpoint_every_steps,
            keep_last=self.keep_last,
            termination_grace_seconds=float(self.termination_grace_period or 0),
            data_uri=self.data_uri,
            data_partition=self.data_partition,
            data_version=self.data_version,
            task=self.task,
            batch_size=self.batch_size,
            lr=self.lr,
            task_options=self.task_options,
            extra_args=self.extra_args,
        )
        if resolve_backend(self.backend) is Backend.KUBERNETES and self.create_pdb:
            self._create_pdb(context)
        return self._holding_pdb(lambda: super(TrainingOperator, self).execute(context))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """The pod ended (or the trigger gave up): the budget stays only if a relaunched pod defers again."""
        if self.create_pdb:
            self._pdb_name = self._pdb_name_for(context)
        return self._holding_pdb(lambda: super(TrainingOperator, self).trigger_reentry(context, event))

    def _holding_pdb(self, run: Any) -> Any:
        """Run ``run``; delete the budget when it ends, unless it deferred (a pod still runs)."""
        deferred = False
        try:
            return run()
        except TaskDeferred:
            deferred = True
            raise
        finally:
            if not deferred:
                self._delete_pdb()

    def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
        """KPO's trigger, carrying the budget's name so a user's kill in the triggerer removes it too."""
        from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

        from mlk8s_airflow.triggers.pod import PodTaskTrigger

        if isinstance(trigger, KubernetesPodTrigger) and not isinstance(trigger, PodTaskTrigger):
            trigger = PodTaskTrigger.wrapping(trigger, pdb_name=self._pdb_name)
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def on_pod_disrupted(self, context: Context, exc: PodDisrupted, count: int) -> None:
        self.log.warning(
            "mlk8s: training pod %s was disrupted (%s); relaunch %d resumes from the last committed "
            "checkpoint under %s",
            exc.pod_name,
            exc.outcome.reason,
            count,
            self.checkpoint_uri,
        )

    def on_pod_succeeded(self, context: Context, result: Any) -> Any:
        if not isinstance(result, dict):
            return result
        relaunches = self._disruptions(context)
        summary = {**result, "relaunches": relaunches}
        self.log.info(
            "mlk8s: training done: model %s, %s steps, %s resumes (%s relaunches by the operator), "
            "%s steps of work lost, metrics %s",
            result.get("model_uri"),
            result.get("steps"),
            result.get("resumes"),
            relaunches,
            result.get("work_lost_steps"),
            result.get("metrics"),
        )
        if self.model_asset is not None:
            context["outlet_events"][self.model_asset].extra = {
                "model_uri": result.get("model_uri"),
                "checkpoint_uri": result.get("checkpoint_uri"),
                "metrics": result.get("metrics"),
            }
        return summary

    # ------------------------------------------------------------------ PodDisruptionBudget (Kubernetes)
    @staticmethod
    def _pdb_name_for(context: Context) -> str:
        ti = context["ti"]
        return budget_name(ti.dag_id, ti.task_id, context["run_id"], ti.map_index)

    def pdb_body(self, context: Context) -> dict[str, Any]:
        """A PDB that blocks voluntary evictions (drains, autoscaler scale-down) of this task's pods."""
        # Every pod this task run launches (relaunches and retries included) carries these labels.
        selector = self._get_ti_pod_labels(context, include_try_number=False)
        return budget_body(self._pdb_name_for(context), str(self.namespace), selector, "training")

    def _budget_namespace(self) -> str:
        """The task's namespace, else the connection's (where KPO puts the pod). Asked again at the end: a task
        resumed from a deferral is a fresh operator, whose unset ``namespace`` is not the one filled in here."""
        return str(self.namespace or self.hook.get_namespace() or "default")

    def _create_pdb(self, context: Context) -> None:
        self.namespace = self._budget_namespace()
        body = self.pdb_body(context)
        create_budget(self.client.api_client, body)
        self._pdb_name = body["metadata"]["name"]
        self.log.info("mlk8s: PodDisruptionBudget %s/%s protects this task's pods", self.namespace, self._pdb_name)

    def _delete_pdb(self) -> None:
        from kubernetes.client.exceptions import ApiException

        if self._pdb_name is None:
            return
        namespace = self._budget_namespace()
        try:
            if delete_budget(self.client.api_client, self._pdb_name, namespace):
                self.log.info("mlk8s: deleted PodDisruptionBudget %s/%s", namespace, self._pdb_name)
        except ApiException as exc:
            self.log.warning("mlk8s: could not delete PodDisruptionBudget %s: %s", self._pdb_name, exc.reason)
        self._pdb_name = None
