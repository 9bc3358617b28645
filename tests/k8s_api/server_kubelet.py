"""The server's side of pods really run: the process kubelet, graceful deletion, logs, the in-cluster endpoint."""

from __future__ import annotations

import copy
import threading
import time
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.k8s_api import kubelet, service_accounts
from tests.k8s_api.admission import admit_pod
from tests.k8s_api.errors import ApiError
from tests.k8s_api.http_handler import ApiHandler
from tests.k8s_api.server_records import PodRuntime
from tests.k8s_api.tls import make_serving_certificate

if TYPE_CHECKING:
    from tests.k8s_api.runtime import ProcessKubelet

Obj = dict[str, Any]


class KubeletMixin:
    """Part of :class:`tests.k8s_api.server.MockKubeServer` (its state lives there)."""

    def serve_in_cluster(self, address: str, port: int = 443) -> None:
        """Also answer HTTPS on ``address:port``, the endpoint pods reach as ``kubernetes.default.svc``.

        Its CA goes into every namespace's ``kube-root-ca.crt`` ConfigMap (and so into the pods' token volumes).
        """
        certificate = make_serving_certificate(address)
        handler = type("Handler", (ApiHandler,), {"api": self})
        self._https = ThreadingHTTPServer((address, port), handler)
        self._https.daemon_threads = True
        assert self.process_kubelet is not None
        context = certificate.server_context(self.process_kubelet.workdir)
        self._https.socket = context.wrap_socket(self._https.socket, server_side=True)
        threading.Thread(
            target=self._https.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-kube-api-https", daemon=True
        ).start()
        self.in_cluster = (address, port)
        self.ca_pem = certificate.ca_pem.decode()
        for ns in self.objects("namespaces"):
            existing = self.get("configmaps", service_accounts.ROOT_CA, ns["metadata"]["name"])
            if existing is not None:
                self._delete_object(
                    self._types[("", "v1", "configmaps")], ns["metadata"]["name"], service_accounts.ROOT_CA
                )
            self._namespace_defaults(ns["metadata"]["name"])

    def run_pods(self, **options: Any) -> ProcessKubelet:
        """Really run every pod no script claims: a process kubelet with its own pod network (needs root).

        ``options`` go to :class:`tests.k8s_api.runtime.ProcessKubelet` (``images``, ``backoff_s``, ...).
        """
        from tests.k8s_api.runtime import ProcessKubelet

        if self.process_kubelet is None:
            self.process_kubelet = ProcessKubelet(self, **options).start()
            if self.service_accounts:
                self.serve_in_cluster(self.process_kubelet.network.gateway)
        return self.process_kubelet

    def _start_kubelet(self, pod: Obj) -> None:
        script = self._claim_script(pod)
        runtime = PodRuntime(script=script)
        meta = pod["metadata"]
        self._runtimes[meta["uid"]] = runtime
        if script is not None:
            threading.Thread(
                target=self._play,
                args=(meta["namespace"], meta["name"], meta["uid"], script, runtime),
                name=f"kubelet-{meta['name']}",
                daemon=True,
            ).start()
        elif self.process_kubelet is not None:
            self.process_kubelet.admit(copy.deepcopy(pod))

    def _runs(self, pod: Obj | None) -> bool:
        """Whether the process kubelet runs this pod (rather than a script or nobody)."""
        return (
            pod is not None and self.process_kubelet is not None and self.process_kubelet.owns(pod["metadata"]["uid"])
        )

    def _append_log(self, uid: str, container: str, line: str) -> None:
        with self._changed:
            runtime = self._runtimes.get(uid)
            if runtime is None:
                return
            entries = runtime.logs.setdefault(container, [])
            entries.append((time.time(), line))
            if len(entries) > 50000:  # a chatty Ray node must not grow without bound
                del entries[: len(entries) - 50000]
            self._changed.notify_all()

    def _remove_pod(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's final deletion of a pod whose containers are gone."""
        with self._changed:
            current = self._objects.get(("", "pods", namespace, name))
            if current is not None and current["metadata"]["uid"] == uid:
                self._delete_object(self._types[("", "v1", "pods")], namespace, name)

    def _delete_gracefully(self, pod: Obj, grace_s: float | None) -> Obj:
        """Start a graceful deletion: deletionTimestamp set, the kubelet stops the containers, then removes it."""
        from tests.k8s_api.pod_worker import Termination

        assert self.process_kubelet is not None
        meta = pod["metadata"]
        grace = float(grace_s if grace_s is not None else pod["spec"].get("terminationGracePeriodSeconds", 30))
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            grace = 0.0

        def mark(p: Obj) -> None:
            if "deletionTimestamp" not in p["metadata"] or grace < p["metadata"].get("deletionGracePeriodSeconds", 1e9):
                deadline = kubelet.now() + kubelet.dt.timedelta(seconds=grace)
                p["metadata"]["deletionTimestamp"] = kubelet.rfc3339(deadline)
                p["metadata"]["deletionGracePeriodSeconds"] = int(grace)

        updated = self._update_pod(meta["namespace"], meta["name"], meta["uid"], mark) or pod
        self.process_kubelet.terminate(meta["uid"], Termination(grace, delete=True))
        return updated

    def _admit_pod(self, pod: Obj, namespace: str) -> None:
        """Pod Security admission from the namespace's labels: 403 on ``enforce``, a Warning on ``warn``."""
        decision = admit_pod(pod, self.get("namespaces", namespace))
        if decision.forbidden:
            raise ApiError(403, "Forbidden", decision.forbidden, {"name": pod["metadata"]["name"], "kind": "pods"})
        for warning in decision.warnings:
            self.add_warning(warning)
        if decision.audit:
            with self._lock:
                self.pod_security_audit.extend((pod["metadata"]["name"], text) for text in decision.audit)
