"""``PodTaskOperator``: KubernetesPodOperator, run by a backend, relaunched when the pod is disrupted.

The pod spec is always built by KPO's own machinery (``build_pod_request_obj``), so every KPO parameter
(image, resources, affinity, tolerations, node_selector, volumes, env, secrets, deferrable, ...) keeps its
meaning. Then a backend runs it:

* ``kubernetes``: KPO's real path (create the pod, stream logs, XCom sidecar, cleanup), sync or deferrable;
* ``local``: the main container as a local process (see ``backends.local``).

Unlike plain KPO, a pod that Kubernetes evicts, preempts or loses with its node is *relaunched* by the same
task try, up to ``max_disruptions`` times, without spending an Airflow retry: the decision comes from
``mlk8s.disruption``, a pure module. Real failures still fail the task and use the normal retries.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from mlk8s.disruption import OutcomeKind, PodOutcome, classify_pod_status
from mlk8s.pod_contract import EXIT_USAGE
from mlk8s_airflow.backends.local.disruption import LocalDisruption
from mlk8s_airflow.backends.local.process import LocalPodProcess, LocalRunResult
from mlk8s_airflow.backends.local.process_spec import process_spec_from_pod
from mlk8s_airflow.backends.local.scratch import new_scratch_dir
from mlk8s_airflow.backends.podspec import PodSpecError, check_pod, main_container
from mlk8s_airflow.backends.var_refs import literal_var_refs
from mlk8s_airflow.config import Backend, default_namespace, pod_service_account, resolve_backend
from mlk8s_airflow.placement import container_security_context, merge_security_context, pod_security_context

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

#: Where the number of disruptions of the current try is kept (survives deferral and worker restarts).
DISRUPTIONS_KEY = "mlk8s_disruptions"


class PodDisrupted(Exception):
    """The pod ended because of the platform (eviction, preemption, lost node), not because of its code."""

    def __init__(self, outcome: PodOutcome, pod_name: str) -> None:
        super().__init__(f"pod {pod_name} was disrupted: {outcome.reason}")
        self.outcome = outcome
        self.pod_name = pod_name


class PodFailed(AirflowException):
    """The pod's own code failed; the task fails and Airflow's normal retries apply."""


class PodRejectedInput(AirflowFailException):
    """The pod refused its input before doing any work (exit code ``EXIT_USAGE``): a retry would fail the same
    way, so the task fails at once without spending its retries."""


def usage_error_message(pod_name: str, detail: str) -> str:
    return (
        f"Pod {pod_name} rejected its input (exit code {EXIT_USAGE}) before starting work: {detail}. "
        "Fix the task's arguments; retrying will not help, so no retry is spent."
    )


def disruption_budget_left(count: int, max_disruptions: int) -> bool:
    """Whether one more relaunch is allowed after ``count`` disruptions."""
    return count <= max_disruptions


class PodTaskOperator(KubernetesPodOperator):
    """Run a pod (on Kubernetes or as a local process) and relaunch it when it is disrupted.

    :param backend: ``kubernetes`` or ``local``; ``None`` (the default) takes the deployment's
        ``[mlk8s] backend`` setting, so DAG files need not say where they run.
    :param max_disruptions: how many evictions/preemptions one task try absorbs by relaunching the pod.
        Past that the task fails with a message saying so (and Airflow's retries apply).
    :param local_disruption: local backend only: simulate an eviction (``{"signal": "SIGTERM",
        "after_log": "checkpoint committed", "attempts": [1]}``); used by the demo and the chaos tests.
    :param expand_env_references: let the kubelet expand ``$(VAR)`` in ``cmds``/``arguments``. Off by
        default: arguments carry rendered user values (Params), and ``$(RAY_AUTH_TOKEN)`` in a Param must
        reach the pod as those characters, never as the token. Each ``$`` is sent escaped as ``$$``.
    """

    template_fields = (*KubernetesPodOperator.template_fields, "local_disruption")

    def __init__(
        self,
        *,
        backend: str | None = None,
        max_disruptions: int = 3,
        local_disruption: Mapping[str, Any] | None = None,
        expand_env_references: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("on_finish_action", "delete_pod")
        kwargs.setdefault("do_xcom_push", True)  # mlk8s pods report their result through the XCom file
        # Secure by default: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp. What a
        # task sets is merged into these defaults, never a replacement for them.
        kwargs["security_context"] = merge_security_context(pod_security_context(), kwargs.get("security_context"))
        for key in ("container_security_context", "xcom_sidecar_container_security_context"):
            kwargs[key] = merge_security_context(container_security_context(), kwargs.get(key))
        # The pods need no Kubernetes API access: a dedicated account (helm-values/rbac.yaml), no token mounted.
        kwargs.setdefault("service_account_name", pod_service_account())
        kwargs.setdefault("automount_service_account_token", False)
        super().__init__(**kwargs)
        if max_disruptions < 0:
            raise ValueError(f"max_disruptions is {max_disruptions}: use 0 (never relaunch) or more.")
        self.backend = backend
        self.max_disruptions = max_disruptions
        self.local_disruption = dict(local_disruption) if local_disruption else None
        self.expand_env_references = expand_env_references
        self._final_status: dict[str, Any] | None = None
        self._final_status_seen = False
        self._local_process: LocalPodProcess | None = None
        self._attempt = 0

    # ----------------------------------------------------------------------------------------- entry points
    def execute(self, context: Context) -> Any:
        backend = resolve_backend(self.backend)
        self.name = self._set_name(self.name)
        disruption = LocalDisruption.from_dict(self.local_disruption) if self.local_disruption else None
        while True:
            self._attempt = self._disruptions(context) + 1
            try:
                if backend is Backend.LOCAL:
                    result = self._execute_local(context, disruption)
                else:
                    result = self._execute_kubernetes(context)
            except PodDisrupted as exc:
                self._handle_disruption(context, exc)
                continue
            return self.on_pod_succeeded(context, result)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Deferrable mode: the trigger saw the pod end; relaunch (and defer again) if it was disrupted."""
        try:
            result = self._classified(lambda: super(PodTaskOperator, self).trigger_reentry(context, event))
        except PodDisrupted as exc:
            self._handle_disruption(context, exc)
            return self.execute(context)  # defers again for the new pod
        return self.on_pod_succeeded(context, result)

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """KPO's pod, with the main container's command and arguments sent literally (see
        ``expand_env_references``): both backends then run exactly the rendered values."""
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        if not self.expand_env_references:
            container = main_container(pod, self.base_container_name)
            container.command = literal_var_refs(container.command)
            container.args = literal_var_refs(container.args)
        return pod

    # ------------------------------------------------------------------------------------ subclass hooks
    def on_pod_succeeded(self, context: Context, result: Any) -> Any:
        """Turn the pod's XCom result into the task's return value (subclasses add assets, checks)."""
        return result

    def on_pod_disrupted(self, context: Context, exc: PodDisrupted, count: int) -> None:
        """Called before each relaunch; subclasses log what the relaunch means for their job."""

    # --------------------------------------------------------------------------------------- disruptions
    def _disruptions(self, context: Context) -> int:
        store = context.get("task_state_store")
        if store is not None:
            try:
                stored = store.get(DISRUPTIONS_KEY, 0)
                return int(stored) if isinstance(stored, int | str) else 0
            except Exception:  # the store is optional; the in-memory count still bounds the loop
                self.log.debug("task_state_store unavailable", exc_info=True)
        return int(getattr(self, "_disruptions_in_memory", 0))

    def _set_disruptions(self, context: Context, count: int) -> None:
        self._disruptions_in_memory = count
        store = context.get("task_state_store")
        if store is not None:
            try:
                store.set(DISRUPTIONS_KEY, count)
            except Exception:
                self.log.debug("task_state_store unavailable", exc_info=True)

    def _handle_disruption(self, context: Context, exc: PodDisrupted) -> None:
        count = self._disruptions(context) + 1
        self._set_disruptions(context, count)
        if not disruption_budget_left(count, self.max_disruptions):
            raise AirflowException(
                f"{exc}. That is disruption {count} of this task try, more than max_disruptions="
                f"{self.max_disruptions}: the task fails (Airflow retries still apply). If the cluster evicts "
                "this often, raise max_disruptions or move the task to a steadier node pool."
            ) from exc
        self.log.warning(
            "mlk8s: %s; relaunching (disruption %d of at most %d, no Airflow retry spent)",
            exc,
            count,
            self.max_disruptions,
        )
        self.on_pod_disrupted(context, exc, count)
        self._reset_for_relaunch()

    def _reset_for_relaunch(self) -> None:
        self.pod = None
        self.pod_request_obj = None
        self.remote_pod = None
        self._final_status = None
        self._final_status_seen = False

    # ---------------------------------------------------------------------------------------- kubernetes
    def _execute_kubernetes(self, context: Context) -> Any:
        if self.pod_request_obj is None:
            self.pod_request_obj = self.build_pod_request_obj(context)
        check_pod(self.pod_request_obj, container_name=self.base_container_name, require_command=False)
        return self._classified(lambda: KubernetesPodOperator.execute(self, context))

    def _classified(self, run: Any) -> Any:
        """Run KPO's path; if it fails, decide from the pod's final status whether it was a disruption."""
        from airflow.providers.cncf.kubernetes.utils.pod_manager import PodNotFoundException

        try:
            return run()
        except Exception as exc:
            if isinstance(exc, PodNotFoundException):
                # Deferrable mode: the pod was deleted while the task waited (evicted, lost with its node).
                self._final_status, self._final_status_seen = None, True
            if self._killed or not self._final_status_seen:
                raise
            outcome = classify_pod_status(self._final_status, self.base_container_name)
            name = self.pod.metadata.name if self.pod is not None else "?"
            if outcome.kind is OutcomeKind.DISRUPTED:
                raise PodDisrupted(outcome, name) from exc
            if outcome.kind is OutcomeKind.FAILED and outcome.exit_code == EXIT_USAGE:
                raise PodRejectedInput(usage_error_message(name, str(exc))) from exc
            raise

    def cleanup(
        self,
        pod: k8s.V1Pod,
        remote_pod: k8s.V1Pod,
        xcom_result: dict[Any, Any] | None = None,
        context: Context | None = None,
    ) -> None:
        """Record the pod's final status (re-read, so a deleted pod reads as gone) before KPO cleans up."""
        if not self._killed and pod is not None and getattr(pod, "metadata", None) is not None:
            from kubernetes.client.exceptions import ApiException

            try:
                fresh = self.client.read_namespaced_pod(pod.metadata.name, pod.metadata.namespace)
                self._final_status = fresh.status.to_dict() if fresh.status else None
                remote_pod = fresh
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self._final_status = None  # gone: evicted and deleted, or lost with its node
            self._final_status_seen = True
        super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)

    # --------------------------------------------------------------------------------------------- local
    def _execute_local(self, context: Context, disruption: LocalDisruption | None) -> Any:
        if self.deferrable:
            self.log.debug("mlk8s: the local backend runs the pod in this worker; deferrable has no effect")
        if not self.namespace:
            self.namespace = default_namespace()
        pod = self.build_pod_request_obj(context, dry_run=True)
        scratch = new_scratch_dir(pod.metadata.name or self.task_id)
        try:
            spec = process_spec_from_pod(pod, container_name=self.base_container_name, scratch_dir=scratch)
        except PodSpecError:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        self.pod = pod
        self._local_process = LocalPodProcess(spec, log=self.log)
        use = disruption if disruption is not None and self._attempt in disruption.attempts else None
        try:
            result: LocalRunResult = self._local_process.run(disruption=use, read_xcom=self.do_xcom_push)
        finally:
            self._local_process = None
            shutil.rmtree(scratch, ignore_errors=True)
        if self._killed:
            raise AirflowException(f"task was killed while pod {spec.pod_name} ran ({result.outcome.reason})")
        if result.outcome.kind is OutcomeKind.DISRUPTED:
            raise PodDisrupted(result.outcome, spec.pod_name)
        if result.outcome.kind is OutcomeKind.FAILED and result.returncode == EXIT_USAGE:
            raise PodRejectedInput(usage_error_message(spec.pod_name, " / ".join(result.log_tail[-3:])))
        if result.outcome.kind is not OutcomeKind.SUCCEEDED:
            raise PodFailed(
                f"Pod {spec.pod_name} returned a failure: {result.outcome.reason}. Last lines:\n"
                + "\n".join(result.log_tail[-10:])
            )
        return result.xcom if self.do_xcom_push else None

    def on_kill(self) -> None:
        """Airflow is stopping the task (worker shutdown, mark-failed): stop the pod; never report success."""
        self._killed = True
        process = self._local_process
        if process is not None:
            process.terminate()
            return
        super().on_kill()
