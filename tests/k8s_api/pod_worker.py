"""One pod's life on the process kubelet (a thread per pod): schedule, sandbox, init containers, containers,
probes, restarts, termination. See tests/k8s_api/runtime.py for what the kubelet does and does not model."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.k8s_api import kubelet
from tests.k8s_api.containers import ContainerProcess, ContainerSpec, StartError
from tests.k8s_api.envvars import ContainerConfigError, command_line, resolve_env
from tests.k8s_api.pod_sandbox import PodSandbox, VolumeError
from tests.k8s_api.pod_status import ContainerState, PodState, publish
from tests.k8s_api.probes import ProbeState, run_probe
from tests.k8s_api.rbac import UserInfo
from tests.k8s_api.service_accounts import kubernetes_service_env

if TYPE_CHECKING:
    from tests.k8s_api.runtime import ProcessKubelet

Obj = dict[str, Any]
_TICK_S = 0.1


@dataclass
class Termination:
    """A request to stop the pod: grace period, whether the object is then deleted, an optional final phase."""

    grace_s: float
    delete: bool
    phase: str | None = None
    reason: str | None = None
    message: str | None = None


class _Run:
    """One container of the pod: spec, published state, current process and probes."""

    def __init__(self, spec: Mapping[str, Any], uid: str, init: bool) -> None:
        self.spec = spec
        self.state = ContainerState(spec["name"], str(spec.get("image", "")), uid, init=init)
        self.process: ContainerProcess | None = None
        self.next_start = 0.0
        self.backoff_s = 0.0
        self.probes: dict[str, ProbeState] = {}
        self.started_ok = True
        self.done = False  # will not run again

    @property
    def name(self) -> str:
        return str(self.spec["name"])


class PodWorker(threading.Thread):
    def __init__(self, kubelet_: ProcessKubelet, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"kubelet-{meta['name']}", daemon=True)
        self.kubelet = kubelet_
        self.server = kubelet_.server
        self.namespace, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.inits = [_Run(c, self.uid, True) for c in spec.get("initContainers") or []]
        self.mains = [_Run(c, self.uid, False) for c in spec.get("containers") or []]
        self.state = PodState([r.state for r in self.inits], [r.state for r in self.mains], self.restart_policy, False)
        self.termination: Termination | None = None
        self.wake = threading.Event()
        self.sandbox: PodSandbox | None = None
        self.pod_ip: str | None = None
        self.node: kubelet.Node | None = None
        self.finished = threading.Event()

    # --- helpers ----------------------------------------------------------------------------------------------

    def pod(self) -> Obj | None:
        pod = self.server.get("pods", self.pod_name, self.namespace)
        return pod if pod is not None and pod["metadata"]["uid"] == self.uid else None

    def publish(self) -> Obj | None:
        return self.server._update_pod(self.namespace, self.pod_name, self.uid, lambda p: publish(p, self.state))

    def event(self, reason: str, message: str, kind: str = "Normal", component: str = "kubelet") -> None:
        pod = self.pod()
        if pod is not None:
            self.server._record_event(pod, reason, message, kind, component)

    def sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def request_termination(self, termination: Termination) -> None:
        if self.termination is None or termination.grace_s < self.termination.grace_s:
            self.termination = termination
        self.wake.set()

    # --- the pod's life ---------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            if self._schedule() and self._create_sandbox():
                self._run_containers()
        except Exception as exc:  # a kubelet bug must not leave processes behind: surface it in the pod's events
            self.event("KubeletError", f"mock kubelet: {exc!r}", "Warning")
            raise
        finally:
            self._terminate()
            self.finished.set()

    def _schedule(self) -> bool:
        while self.termination is None:
            pod = self.pod()
            if pod is None:
                return False
            node, why = kubelet.schedule(pod["spec"], self.server.nodes)
            if node is not None:
                self.node = node

                def bind(p: Obj, node: kubelet.Node = node) -> None:
                    p["spec"]["nodeName"] = node.name
                    kubelet.set_condition(p["status"], kubelet.condition("PodScheduled", True, kubelet.now()))

                self.server._update_pod(self.namespace, self.pod_name, self.uid, bind)
                self.event(
                    "Scheduled",
                    f"Successfully assigned {self.namespace}/{self.pod_name} to {node.name}",
                    component="default-scheduler",
                )
                return True
            self.server._update_pod(
                self.namespace, self.pod_name, self.uid, lambda p, w=why: kubelet.unschedulable(p["status"], w)
            )
            self.event("FailedScheduling", why, "Warning", "default-scheduler")
            self.sleep(self.kubelet.reschedule_s)
        return False

    def _create_sandbox(self) -> bool:
        pod = self.pod()
        if pod is None:
            return False
        iface = self.kubelet.network.add_pod(self.uid)
        self.pod_ip = iface.ip
        self.iface = iface
        self.sandbox = PodSandbox(self.kubelet.workdir, pod, self.kubelet.shm_root)
        gateway = self.kubelet.network.gateway

        def addresses(p: Obj) -> None:
            status = p["status"]
            status.update(
                {
                    "hostIP": gateway,
                    "hostIPs": [{"ip": gateway}],
                    "podIP": iface.ip,
                    "podIPs": [{"ip": iface.ip}],
                    "startTime": kubelet.rfc3339(kubelet.now()),
                }
            )
            publish(p, self.state)

        self.state.sandbox_ready = True
        updated = self.server._update_pod(self.namespace, self.pod_name, self.uid, addresses)
        if updated is None:
            return False
        self.sandbox.write_etc(updated, self.kubelet.hosts_for(updated))
        while self.termination is None:
            try:
                self.sandbox.prepare_volumes(updated, self.server, self._issue_token)
                return True
            except VolumeError as exc:
                self.event("FailedMount", str(exc), "Warning")
                self.sleep(self.kubelet.retry_s)
        return False

    def _issue_token(self) -> str:
        pod = self.pod() or {}
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        return self.server.issue_token(UserInfo.service_account(self.namespace, account))

    def _run_containers(self) -> None:
        for run in self.inits:
            while not run.done and self.termination is None:
                self._step(run)
                if (
                    run.state.terminated is not None
                    and run.state.terminated.get("exitCode") != 0
                    and self.restart_policy == "Never"
                ):
                    self.publish()
                    return  # the pod failed
                self.sleep(_TICK_S)
        if self.termination is not None:
            return
        self.publish()
        while self.termination is None:
            if self.pod() is None:  # removed behind the kubelet's back (forced deletion)
                self.request_termination(Termination(0.0, delete=False))
                break
            for run in self.mains:
                self._step(run)
            if all(r.done for r in self.mains):
                self.publish()
                self._release_network()
                self.sleep(3600)  # ended for good: the object stays until deleted
                continue
            self.sleep(_TICK_S)

    # --- one container ----------------------------------------------------------------------------------------

    def _step(self, run: _Run) -> None:
        now = time.time()
        if run.process is None:
            if not run.done and now >= run.next_start:
                self._start(run)
            return
        code = run.process.poll()
        if code is not None:
            self._exited(run, code)
            return
        self._probe(run, now)

    def _start(self, run: _Run) -> None:
        pod = self.pod()
        if pod is None or self.sandbox is None or self.node is None:
            return
        try:
            spec = self._container_spec(pod, run)
        except (ContainerConfigError, VolumeError) as exc:
            if run.state.waiting_reason != "CreateContainerConfigError" or run.state.waiting_message != str(exc):
                run.state.set_waiting("CreateContainerConfigError", str(exc))
                self.publish()
                self.event("Failed", f"Error: {exc}", "Warning")
            run.next_start = time.time() + self.kubelet.retry_s
            return
        except _ImagePullError as exc:
            if run.state.waiting_reason != "ErrImagePull":
                run.state.set_waiting("ErrImagePull", str(exc))
                self.publish()
                self.event("Failed", f'Failed to pull image "{run.state.image}": {exc}', "Warning")
            run.next_start = time.time() + self.kubelet.retry_s
            return
        cdir = self.sandbox.container_dir(run.name, run.state.attempt + 1)
        process = ContainerProcess(
            cdir, self.iface.netns_path, spec, lambda line, n=run.name: self.kubelet.log(self.uid, n, line)
        )
        self.event("Pulled", f'Container image "{run.state.image}" already present on machine')
        try:
            process.start()
        except StartError as exc:
            run.state.set_running()
            run.state.set_terminated(128, "StartError", str(exc))
            self.event("Failed", f'Error: failed to start container "{run.name}": {exc}', "Warning")
            self._after_exit(run, 128)
            return
        run.process = process
        run.state.set_running()
        run.probes = {
            kind: ProbeState(run.spec[kind], process.started_at)
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if run.spec.get(kind)
        }
        run.state.ready = not run.state.init and "readinessProbe" not in run.probes and "startupProbe" not in run.probes
        self.event("Created", f"Created container: {run.name}")
        self.event("Started", f"Started container {run.name}")
        self.publish()

    def _container_spec(self, pod: Obj, run: _Run) -> ContainerSpec:
        assert self.sandbox is not None and self.node is not None
        container = run.spec
        image = self.kubelet.images.resolve(str(container.get("image", "")))
        if image is None:
            raise _ImagePullError(
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{container.get("image")}": not found'
            )
        pod_sc = pod["spec"].get("securityContext") or {}
        sc = container.get("securityContext") or {}
        uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", image.user)))
        # Without runAsGroup: the user's group in the image (its /etc/passwd), root's group for other users.
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", image.group if uid == image.user else 0))
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root and int(uid) == 0:
            raise ContainerConfigError(
                "container has runAsNonRoot and image will run as root "
                f'(pod: "{self.pod_name}_{self.namespace}({self.uid})", container: {run.name})'
            )
        base = image.environment()
        if self.server.in_cluster is not None:
            base.update(kubernetes_service_env(*self.server.in_cluster))
        env = resolve_env(pod, container, self.server, self.node.allocatable, base)
        argv = command_line(container, env, list(image.entrypoint))
        groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
        if pod_sc.get("fsGroup") is not None:
            groups.insert(0, int(pod_sc["fsGroup"]))
        return ContainerSpec(
            name=run.name,
            argv=argv,
            env=env,
            uid=int(uid),
            gid=int(gid),
            groups=sorted(set(groups)),
            hostname=(pod["spec"].get("hostname") or self.pod_name)[:63],
            working_dir=str(container.get("workingDir") or "/"),
            mounts=self.sandbox.mounts(container, self.sandbox.container_dir(run.name, run.state.attempt + 1), int(uid))
            + [{"source": str(d), "target": str(d)} for d in self.kubelet.shared_dirs],
            read_only_root=bool(sc.get("readOnlyRootFilesystem")),
            traversable=[os.path.realpath(sys.executable), sys.executable],
        )

    def _exited(self, run: _Run, code: int) -> None:
        assert run.process is not None
        message = _termination_message(run)
        ran_for = time.time() - run.process.started_at
        run.state.set_terminated(code, None, message)
        run.process = None
        self._after_exit(run, code, ran_for)

    def _after_exit(self, run: _Run, code: int, ran_for: float = 0.0) -> None:
        restart = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)
        if run.state.init:
            restart = code != 0 and self.restart_policy != "Never"
            run.done = code == 0
        elif not restart:
            run.done = True
        if restart:
            run.backoff_s = (
                self.kubelet.backoff_s if ran_for > 600 or not run.backoff_s else min(run.backoff_s * 2, 300)
            )
            run.next_start = time.time() + run.backoff_s
            run.state.restart_count += 1
            run.state.set_waiting(
                "CrashLoopBackOff",
                f"back-off {run.backoff_s:.0f}s restarting failed container={run.name} "
                f"pod={self.pod_name}_{self.namespace}({self.uid})",
            )
            self.event("BackOff", f"Back-off restarting failed container {run.name} in pod {self.pod_name}", "Warning")
        self.publish()

    def _probe(self, run: _Run, now: float) -> None:
        assert run.process is not None and self.pod_ip is not None
        startup = run.probes.get("startupProbe")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            state = run.probes.get(kind)
            if state is None or (kind != "startupProbe" and startup is not None and startup.verdict is not True):
                continue
            if kind == "startupProbe" and state.verdict is True:
                continue
            if not state.due(now):
                continue
            ok = run_probe(
                state.probe, self.pod_ip, run.spec.get("ports") or [], run.process.exec_argv, run.process.exec_env()
            )
            verdict = state.record(ok, time.time())
            if not ok:
                self.event("Unhealthy", f"{kind.removesuffix('Probe').capitalize()} probe failed", "Warning")
            if kind == "readinessProbe" and verdict is not None:
                run.state.ready = verdict
                self.publish()
            elif kind == "startupProbe" and verdict is True and "readinessProbe" not in run.probes:
                run.state.ready = True
                self.publish()
            elif kind in ("livenessProbe", "startupProbe") and verdict is False:
                self.event(
                    "Killing", f"Container {run.name} failed {kind.removesuffix('Probe')} probe, will be restarted"
                )
                self._stop_container(run, self._grace_s())

    # --- termination ------------------------------------------------------------------------------------------

    def _grace_s(self) -> float:
        pod = self.pod()
        return float((pod or {}).get("spec", {}).get("terminationGracePeriodSeconds", 30))

    def _stop_container(self, run: _Run, grace_s: float) -> None:
        if run.process is None:
            return
        run.process.signal(signal.SIGTERM)
        code = run.process.wait(grace_s)
        if code is None:
            run.process.kill()
            code = run.process.poll()
        self._exited(run, code if code is not None else 137)

    def _terminate(self) -> None:
        """Stop every container (SIGTERM, grace, SIGKILL, in parallel), publish, then delete if asked."""
        request = self.termination
        grace = request.grace_s if request is not None else 0.0
        running = [r for r in self.inits + self.mains if r.process is not None]
        for run in running:
            self.event("Killing", f"Stopping container {run.name}")
            run.done = True
            assert run.process is not None
            run.process.signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        for run in running:
            assert run.process is not None
            code = run.process.wait(max(0.0, deadline - time.monotonic()))
            if code is None:
                run.process.kill()
                code = run.process.poll() or 137
            message = _termination_message(run)
            run.state.set_terminated(code, None, message)
            run.process = None
        for run in self.inits + self.mains:
            run.done = True
            if run.state.terminated is None and run.state.running_since is None:
                if run.state.has_run or not run.state.init:
                    run.state.terminated = {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was terminated",
                        "finishedAt": kubelet.rfc3339(kubelet.now()),
                    }

        def final(p: Obj) -> None:
            publish(p, self.state)
            if request is not None and request.phase:
                p["status"]["phase"] = request.phase
            if request is not None and request.reason:
                p["status"]["reason"] = request.reason
                p["status"]["message"] = request.message or ""

        if self.sandbox is not None:
            self.server._update_pod(self.namespace, self.pod_name, self.uid, final)
        self._release_network()
        if request is not None and request.delete:
            self.server._remove_pod(self.namespace, self.pod_name, self.uid)
        if self.sandbox is not None:
            self.sandbox.cleanup()
        self.kubelet._forget(self.uid)

    def _release_network(self) -> None:
        if self.pod_ip is not None:
            self.kubelet.network.remove_pod(self.uid)
            self.pod_ip = None
            self.kubelet.topology_changed()


class _ImagePullError(Exception):
    pass


def _termination_message(run: _Run) -> str | None:
    if run.process is None:
        return None
    log = run.process.directory / "termination-log"
    with contextlib.suppress(OSError):
        text = log.read_bytes()[:4096].decode(errors="replace")
        if text:
            return text
    return None
