"""The process kubelet: pods the mock API server stores are really run, each in its own network namespace.

One :class:`PodWorker` thread per pod does what a kubelet does for it: schedule it onto a mock node
(nodeSelector, affinity, taints, GPUs: :func:`tests.k8s_api.kubelet.schedule`; unschedulable pods stay
Pending and are retried), create the sandbox (network namespace and IP, /etc/hosts with the Service names,
volumes), run the init containers in order, then the containers; resolve each container's environment from
the Secrets and ConfigMaps stored in the server (a missing one: ``CreateContainerConfigError``, retried),
refuse ``runAsNonRoot`` with a root user, run it as ``runAsUser``/``runAsGroup`` (pod or container level, else
the image's user) with ``fsGroup`` and ``supplementalGroups``; collect its output as the pod log; run its
startup, readiness and liveness probes; restart it per ``restartPolicy`` with the kubelet's back-off
(``CrashLoopBackOff``); publish every change as the pod's status; and on deletion or eviction send SIGTERM,
wait ``terminationGracePeriodSeconds`` (or the deletion's grace), SIGKILL, and remove the pod.

What only a real cluster proves, and this does not: scheduling by CPU/memory fit, cgroup limits (requests
and limits are not enforced; OOMKilled never happens), image pulls, preStop/postStart hooks, a CNI and
kube-proxy, node failure, DNS beyond /etc/hosts.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.k8s_api import pod_dns
from tests.k8s_api.containers import ContainerProcess, StartError
from tests.k8s_api.images import ImageRegistry
from tests.k8s_api.network import PodNetwork
from tests.k8s_api.pod_worker import PodWorker, Termination

if TYPE_CHECKING:
    from tests.k8s_api.server import MockKubeServer

Obj = dict[str, Any]


_STALE = re.compile(r"^mlk8s-(?:kubelet|box)-(\d+)-")


def sweep_stale_dirs() -> list[Path]:
    """Remove the pod and box directories of runs whose process is gone (a killed test run leaves them)."""
    removed = []
    for root in (Path("/var/tmp"), Path("/dev/shm")):
        for path in root.glob("mlk8s-*"):
            match = _STALE.match(path.name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, capture_output=True)
                removed.append(path)
    return removed


class ProcessKubelet:
    """Runs the pods of a :class:`MockKubeServer`; owns the pod network's namespaces and the pods' dirs."""

    def __init__(
        self,
        server: MockKubeServer,
        *,
        images: ImageRegistry | None = None,
        workdir: Path | None = None,
        backoff_s: float = 10.0,
        retry_s: float = 1.0,
        reschedule_s: float = 2.0,
        shared_dirs: Sequence[Path] = (),
    ) -> None:
        self.server = server
        #: Host directories mounted into every container at the same path: the stand-in for shared storage
        #: (an object store bucket, a shared filesystem) that pods on different nodes all reach.
        self.shared_dirs = [Path(d) for d in shared_dirs]
        self.images = images or ImageRegistry()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"mlk8s-kubelet-{os.getpid()}-", dir="/var/tmp"))
        self.shm_root = Path(tempfile.mkdtemp(prefix=f"mlk8s-kubelet-{os.getpid()}-", dir="/dev/shm"))
        self.workdir.chmod(0o711)
        self.backoff_s = backoff_s
        self.retry_s = retry_s
        self.reschedule_s = reschedule_s
        self.network = PodNetwork()
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._topology = threading.Event()
        self._stopped = threading.Event()
        self._dns_thread: threading.Thread | None = None

    def start(self) -> ProcessKubelet:
        sweep_stale_dirs()
        self.network.start()
        self._dns_thread = threading.Thread(target=self._refresh_hosts_loop, name="kubelet-dns", daemon=True)
        self._dns_thread.start()
        return self

    # --- called by the server ---------------------------------------------------------------------------------

    def admit(self, pod: Obj) -> None:
        worker = PodWorker(self, pod)
        with self._lock:
            self._workers[pod["metadata"]["uid"]] = worker
        worker.start()

    def owns(self, uid: str) -> bool:
        with self._lock:
            return uid in self._workers

    def terminate(self, uid: str, termination: Termination) -> bool:
        with self._lock:
            worker = self._workers.get(uid)
        if worker is None:
            return False
        worker.request_termination(termination)
        return True

    def worker(self, uid: str) -> PodWorker | None:
        with self._lock:
            return self._workers.get(uid)

    def container(self, uid: str, name: str) -> ContainerProcess | None:
        worker = self.worker(uid)
        if worker is None:
            return None
        run = next((r for r in worker.inits + worker.mains if r.name == name), None)
        return run.process if run is not None else None

    def open_exec(self, uid: str, container: str, command: Sequence[str], stdin: bool) -> subprocess.Popen[bytes]:
        """Start ``command`` inside a running container (``kubectl exec``); the caller pumps its streams."""
        process = self.container(uid, container)
        if process is None or process.poll() is not None:
            raise StartError(f"container {container} is not running")
        return subprocess.Popen(
            process.exec_argv(command),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=process.exec_env(),
            start_new_session=True,
        )

    def log(self, uid: str, container: str, line: str) -> None:
        self.server._append_log(uid, container, line)

    def topology_changed(self) -> None:
        self._topology.set()

    def hosts_for(self, pod: Obj) -> str:
        return pod_dns.hosts_file(
            pod, self.server.objects("services"), self.server.objects("pods"), self._extra_hosts()
        )

    def _extra_hosts(self) -> dict[str, list[str]]:
        """The ``kubernetes`` Service's names -> the API server's in-cluster address (it has no pods)."""
        if self.server.in_cluster is None:
            return {}
        return {self.server.in_cluster[0]: list(pod_dns.KUBERNETES_NAMES)}

    def _refresh_hosts_loop(self) -> None:
        while not self._stopped.is_set():
            if not self._topology.wait(0.5):
                continue
            self._topology.clear()
            time.sleep(0.05)  # batch a burst of changes
            services, pods = self.server.objects("services"), self.server.objects("pods")
            with self._lock:
                workers = list(self._workers.values())
            for worker in workers:
                pod = worker.pod()
                if pod is not None and worker.sandbox is not None and worker.pod_ip is not None:
                    with contextlib.suppress(OSError):
                        worker.sandbox.refresh_hosts(pod_dns.hosts_file(pod, services, pods, self._extra_hosts()))

    def _forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Kill every pod now (no grace), then remove the network and the pods' directories."""
        self._stopped.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.request_termination(Termination(0.0, delete=False))
        deadline = time.monotonic() + timeout_s
        for worker in workers:
            worker.finished.wait(max(0.1, deadline - time.monotonic()))
        self.network.stop()
        for path in (self.workdir, self.shm_root):
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, capture_output=True)
