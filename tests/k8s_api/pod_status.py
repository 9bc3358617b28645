"""The status the process kubelet publishes for a pod it really runs, derived as the kubelet derives it.

One :class:`ContainerState` per container keeps what the runtime knows (waiting with a reason, running since,
terminated with an exit code, restarts, readiness); :func:`publish` writes containerStatuses,
initContainerStatuses, the phase (the kubelet's ``getPhase``: Pending while an init container or a never-run
container waits; Running while one runs or will be restarted; Succeeded/Failed once all ended for good) and
the conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready). Conditions set by others
(PodScheduled, DisruptionTarget) are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.k8s_api.kubelet import condition, container_id, now, set_condition

Obj = dict[str, Any]


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class ContainerState:
    name: str
    image: str
    pod_uid: str
    init: bool = False
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str | None = None
    running_since: float | None = None
    terminated: Obj | None = None
    last_terminated: Obj | None = None
    restart_count: int = 0
    ready: bool = False
    #: Set once the container has run at least once (a waiting container that ran is "stopped", not "waiting").
    has_run: bool = False
    attempt: int = 0

    @property
    def container_id(self) -> str:
        return container_id(self.pod_uid, f"{self.name}-{self.attempt}")

    def to_status(self) -> Obj:
        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": f"docker.io/library/{self.image}@sha256:" + "0" * 64 if self.has_run else "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.running_since is not None,
            "lastState": {"terminated": dict(self.last_terminated)} if self.last_terminated else {},
        }
        if self.running_since is not None:
            status["state"] = {"running": {"startedAt": _ts(self.running_since)}}
            status["containerID"] = self.container_id
        elif self.terminated is not None:
            status["state"] = {"terminated": dict(self.terminated)}
            if "containerID" in self.terminated:
                status["containerID"] = self.terminated["containerID"]
        else:
            waiting: Obj = {"reason": self.waiting_reason or "ContainerCreating"}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            status["state"] = {"waiting": waiting}
        return status

    def set_waiting(self, reason: str, message: str | None = None) -> None:
        self.waiting_reason, self.waiting_message = reason, message
        self.running_since = None
        if self.terminated is not None:
            self.last_terminated, self.terminated = self.terminated, None

    def set_running(self) -> None:
        self.attempt += 1
        self.running_since = time.time()
        self.waiting_reason = self.waiting_message = None
        if self.terminated is not None:
            self.last_terminated, self.terminated = self.terminated, None
        self.has_run = True
        self.ready = False

    def set_terminated(self, exit_code: int, reason: str | None = None, message: str | None = None) -> None:
        started = self.running_since or time.time()
        term: Obj = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": _ts(started),
            "finishedAt": _ts(time.time()),
        }
        if self.has_run:
            term["containerID"] = self.container_id
        if message:
            term["message"] = message
        self.terminated = term
        self.running_since = None
        self.ready = False


def pod_phase(init: Sequence[ContainerState], main: Sequence[ContainerState], restart_policy: str) -> str:
    """The kubelet's ``getPhase`` over the container states."""
    if any(c.terminated is None or c.terminated.get("exitCode") != 0 for c in init):
        failed_init = any(c.terminated is not None and c.terminated.get("exitCode") != 0 for c in init)
        if failed_init and restart_policy == "Never":
            return "Failed"
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for c in main:
        if c.running_since is not None:
            running += 1
        elif c.terminated is not None:
            stopped += 1
            succeeded += int(c.terminated.get("exitCode") == 0)
        elif c.has_run:
            stopped += 1  # waiting to be restarted
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Running" if restart_policy == "OnFailure" else "Failed"
    return "Pending"


@dataclass
class PodState:
    """What :func:`publish` writes, beside the container states."""

    init: list[ContainerState] = field(default_factory=list)
    main: list[ContainerState] = field(default_factory=list)
    restart_policy: str = "Always"
    sandbox_ready: bool = False

    def phase(self) -> str:
        return pod_phase(self.init, self.main, self.restart_policy)


def publish(pod: Obj, state: PodState) -> None:
    """Write ``state`` into the stored pod's status (in place)."""
    status = pod.setdefault("status", {})
    t = now()
    phase = state.phase()
    if status.get("phase") not in ("Succeeded", "Failed"):  # a terminal phase never changes
        status["phase"] = phase
    if state.init:
        status["initContainerStatuses"] = [c.to_status() for c in state.init]
    status["containerStatuses"] = [c.to_status() for c in state.main]
    old = {c["type"]: c for c in status.get("conditions") or []}

    def cond(kind: str, value: bool, reason: str | None = None, message: str | None = None) -> None:
        prior = old.get(kind)
        if prior is not None and prior.get("status") == ("True" if value else "False"):
            return  # unchanged: keep lastTransitionTime
        set_condition(status, condition(kind, value, t, reason, message))

    ended = status.get("phase") in ("Succeeded", "Failed")
    cond("PodReadyToStartContainers", state.sandbox_ready and not ended)
    init_done = all(c.terminated is not None and c.terminated.get("exitCode") == 0 for c in state.init)
    cond("Initialized", init_done, None if init_done else "ContainersNotInitialized")
    not_ready = [c.name for c in state.main if not c.ready]
    if not_ready:
        reason = (
            ("PodCompleted" if status.get("phase") == "Succeeded" else "PodFailed") if ended else "ContainersNotReady"
        )
        message = None if ended else f"containers with unready status: [{' '.join(not_ready)}]"
        cond("ContainersReady", False, reason, message)
        cond("Ready", False, reason, message)
    else:
        cond("ContainersReady", True)
        cond("Ready", True)
