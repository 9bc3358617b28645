"""Was a pod *disrupted* (evicted, preempted, node lost, killed by a signal) or did its code fail?

The difference decides who pays: a disruption is the platform's doing, so the operator relaunches the pod and
training resumes from its checkpoint without spending one of the task's Airflow retries; a real failure (bad
code, bad data) fails the task and goes through the normal retries. KubernetesPodOperator treats both alike.

Everything here works on plain data (the ``to_dict()`` form of a ``V1PodStatus``, a return code), so it runs
with no cluster and no Airflow.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlk8s.pod_contract import EXIT_INTERRUPTED

#: ``status.reason`` values the kubelet and node controller set on pods they kill or lose.
DISRUPTION_POD_REASONS = frozenset({"Evicted", "Preempting", "NodeLost", "NodeShutdown", "Terminated", "Shutdown"})
#: The signals that stop a container from outside: the kubelet's SIGTERM (eviction, preemption, deletion) and
#: its SIGKILL after the grace period. Any other fatal signal (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, ...) is the
#: process's own failure and recurs on a relaunch.
DISRUPTION_SIGNALS = frozenset({signal.SIGTERM, signal.SIGKILL})


class OutcomeKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    DISRUPTED = "disrupted"
    FAILED = "failed"
    RUNNING = "running"


@dataclass(frozen=True)
class PodOutcome:
    kind: OutcomeKind
    reason: str
    exit_code: int | None = None

    @property
    def disrupted(self) -> bool:
        return self.kind is OutcomeKind.DISRUPTED


def _get(obj: Mapping[str, Any] | None, *keys: str) -> Any:
    """Read a key from a status dict in either the client's snake_case or the API's camelCase form."""
    if not obj:
        return None
    for key in keys:
        if key in obj and obj[key] is not None:
            return obj[key]
    return None


def _container_termination(status: Mapping[str, Any], container: str) -> tuple[int | None, str | None]:
    """The container's exit code and termination reason (e.g. ``OOMKilled``), if it has terminated."""
    for cs in _get(status, "container_statuses", "containerStatuses") or []:
        if _get(cs, "name") != container:
            continue
        terminated = _get(_get(cs, "state") or {}, "terminated")
        if terminated is not None:
            code = _get(terminated, "exit_code", "exitCode")
            return (int(code) if code is not None else None), _get(terminated, "reason")
    return None, None


def classify_pod_status(status: Mapping[str, Any] | None, container: str = "base") -> PodOutcome:
    """Classify a pod from its status (``V1PodStatus.to_dict()`` or the raw API JSON).

    ``None`` means the pod is gone (deleted by the Eviction API after its grace period, or garbage-collected
    with a lost node) before we saw it finish: that is a disruption, not a code failure.
    """
    if status is None:
        return PodOutcome(OutcomeKind.DISRUPTED, "pod disappeared before it finished (evicted or node lost)")
    phase = _get(status, "phase")
    exit_code, termination_reason = _container_termination(status, container)
    for cond in _get(status, "conditions") or []:
        if _get(cond, "type") == "DisruptionTarget" and str(_get(cond, "status")) == "True":
            reason = _get(cond, "reason") or "DisruptionTarget"
            if phase == "Succeeded":
                break  # it finished before the disruption took effect
            return PodOutcome(OutcomeKind.DISRUPTED, f"DisruptionTarget: {reason}", exit_code)
    pod_reason = _get(status, "reason")
    if phase == "Succeeded":
        return PodOutcome(OutcomeKind.SUCCEEDED, "pod succeeded", exit_code)
    if pod_reason in DISRUPTION_POD_REASONS:
        return PodOutcome(
            OutcomeKind.DISRUPTED, f"pod {pod_reason}: {_get(status, 'message') or ''}".strip(), exit_code
        )
    if phase == "Unknown":
        return PodOutcome(OutcomeKind.DISRUPTED, "pod phase Unknown (node lost)", exit_code)
    if phase == "Failed":
        if exit_code == EXIT_INTERRUPTED:
            return PodOutcome(OutcomeKind.DISRUPTED, "interrupted by SIGTERM after committing a checkpoint", exit_code)
        if termination_reason == "OOMKilled":
            # Out of memory recurs on every relaunch: a real failure, fixed by more memory or a smaller batch.
            return PodOutcome(OutcomeKind.FAILED, "container OOMKilled: raise its memory limit", exit_code)
        if exit_code is not None and exit_code - 128 in DISRUPTION_SIGNALS:
            # Killed by a signal it did not send itself: the kubelet or the node going away.
            return PodOutcome(OutcomeKind.DISRUPTED, f"container killed by signal (exit code {exit_code})", exit_code)
        return PodOutcome(OutcomeKind.FAILED, f"container failed with exit code {exit_code}", exit_code)
    return PodOutcome(OutcomeKind.RUNNING, f"pod phase {phase}", exit_code)


def classify_exit(returncode: int) -> PodOutcome:
    """Classify a local process (the local backend's pod) from its return code.

    A negative return code means the process was killed by a signal: SIGTERM or SIGKILL is how the local
    backend stops a pod (an eviction), so those are disruptions; a crash (SIGSEGV, SIGABRT, ...) is a failure,
    as it is on a cluster. ``EXIT_INTERRUPTED`` means the job caught SIGTERM and committed a checkpoint.
    """
    if returncode == 0:
        return PodOutcome(OutcomeKind.SUCCEEDED, "process exited 0", 0)
    if returncode < 0:
        sig = signal.Signals(-returncode)
        if sig in DISRUPTION_SIGNALS:
            return PodOutcome(OutcomeKind.DISRUPTED, f"process killed by {sig.name}", returncode)
        return PodOutcome(OutcomeKind.FAILED, f"process crashed with {sig.name}", returncode)
    if returncode == EXIT_INTERRUPTED:
        return PodOutcome(OutcomeKind.DISRUPTED, "interrupted by SIGTERM after committing a checkpoint", returncode)
    return PodOutcome(OutcomeKind.FAILED, f"process exited with code {returncode}", returncode)
