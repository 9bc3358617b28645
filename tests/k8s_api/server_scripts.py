"""Scripted pod lives, for fast unit tests: a :class:`PodScript` played against a pod no kubelet runs."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from tests.k8s_api import kubelet
from tests.k8s_api.errors import ApiError, not_found
from tests.k8s_api.kubelet import Disruption, PodScript, as_disruption
from tests.k8s_api.server_records import PodRuntime

Obj = dict[str, Any]


class ScriptedPodsMixin:
    """Part of :class:`tests.k8s_api.server.MockKubeServer` (its state lives there)."""

    def script_pod(
        self,
        match: str | dict[str, str],
        script: PodScript | None = None,
        *,
        logs: Sequence[str] = (),
        exit_code: int = 0,
        disruption: Disruption | str | tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> PodScript:
        """Queue the life of the next created pod whose name starts with ``match`` (or whose labels include it).

        Scripts for the same match are used in order, one per pod: script a preemption then a success to test
        a relaunch. A pod no script matches stays Pending, unscheduled, like a cluster with no room.
        """
        if script is None:
            script = PodScript(logs=list(logs), exit_code=exit_code, disruption=as_disruption(disruption), **kwargs)
        with self._lock:
            self._scripts.append((match, script))
        return script

    def _claim_script(self, pod: Obj) -> PodScript | None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        for i, (match, script) in enumerate(self._scripts):
            if isinstance(match, str):
                hit = meta["name"].startswith(match)
            else:
                hit = all(labels.get(k) == v for k, v in match.items())
            if hit:
                self._scripts.pop(i)
                script.played_on = meta["name"]
                return script
        return None

    def emit_log(self, namespace: str, name: str, line: str, container: str | None = None) -> None:
        with self._changed:
            pod = self._objects[("", "pods", namespace, name)]
            runtime = self._runtimes[pod["metadata"]["uid"]]
            runtime.logs.setdefault(kubelet.main_container(pod, container), []).append((time.time(), line))
            self._changed.notify_all()

    def finish_pod(
        self,
        namespace: str,
        name: str,
        exit_code: int = 0,
        *,
        reason: str | None = None,
        message: str | None = None,
        container: str | None = None,
    ) -> Obj | None:
        """Let the main container exit; the pod settles as the kubelet would (XCom sidecar keeps running)."""
        pod = self.get("pods", name, namespace)
        if pod is None:
            raise KeyError(f"no pod {namespace}/{name}")
        target = kubelet.main_container(pod, container)

        def mutate(p: Obj) -> None:
            kubelet.terminate_container(p, target, exit_code, reason, message)
            kubelet.settle_phase(p)

        updated = self._update_pod(namespace, name, pod["metadata"]["uid"], mutate)
        if updated is not None and updated["status"]["phase"] in ("Succeeded", "Failed"):
            self._runtimes[pod["metadata"]["uid"]].stop.set()
        return updated

    def _play(self, namespace: str, name: str, uid: str, script: PodScript, runtime: PodRuntime) -> None:
        def wait(seconds: float) -> bool:
            return not runtime.stop.wait(seconds) and not self._stopped.is_set()

        if not wait(script.pending_s + self.step_s):
            return
        pod = self.get("pods", name, namespace)
        if pod is None:
            return
        node, why = kubelet.schedule(pod["spec"], self.nodes)
        if script.unschedulable or node is None:
            why = why or f"0/{len(self.nodes)} nodes are available: scripted as unschedulable."
            self._update_pod(namespace, name, uid, lambda p: kubelet.unschedulable(p["status"], why))
            self._record_event(pod, "FailedScheduling", why, "Warning", "default-scheduler")
            return

        def bind(p: Obj) -> None:
            p["spec"]["nodeName"] = node.name
            kubelet.scheduled(p, node.name)

        self._update_pod(namespace, name, uid, bind)
        self._record_event(
            pod, "Scheduled", f"Successfully assigned {namespace}/{name} to {node.name}", component="default-scheduler"
        )
        if not wait(self.step_s):
            return
        for c in pod["spec"]["containers"]:
            self._record_event(pod, "Pulled", f'Container image "{c["image"]}" already present on machine')
            self._record_event(pod, "Created", f"Created container: {c['name']}")
            self._record_event(pod, "Started", f"Started container {c['name']}")
        if self._update_pod(namespace, name, uid, kubelet.started) is None:
            return
        for line in script.logs:
            if not wait(script.line_interval_s):
                return
            try:
                self.emit_log(namespace, name, line, script.container)
            except KeyError:
                return
        if script.keep_running or not wait(self.step_s):
            return
        if script.disruption is not None:
            self.disrupt_pod(namespace, name, script.disruption)
        else:
            self.finish_pod(
                namespace,
                name,
                script.exit_code,
                reason=script.termination_reason,
                message=script.termination_message,
                container=script.container,
            )

    def exec_command(
        self, namespace: str, name: str, container: str, command: list[str], stdin: str | None
    ) -> tuple[str, str, int]:
        """Run the two shell commands KPO sends to its XCom sidecar; anything else fails like ``sh`` would."""
        pod = self.get("pods", name, namespace)
        if pod is None:
            raise not_found(self._types[("", "v1", "pods")], name)
        state = next(
            (cs["state"] for cs in pod["status"].get("containerStatuses") or [] if cs["name"] == container), None
        )
        if state is None or "running" not in state:
            raise ApiError(400, "BadRequest", f"container {container} is not running in pod {name}")
        script = (self._runtimes.get(pod["metadata"]["uid"]) or PodRuntime()).script
        text = " ".join(command[2:]) if command[:2] == ["/bin/sh", "-c"] else (stdin or "")
        if "return.json" in text and "cat" in text:
            if script is not None and script.has_xcom:
                return json.dumps(script.xcom) + "\n", "", 0
            return "__airflow_xcom_result_empty__\n", "", 0
        if text.strip().startswith("kill -2") or "/proc/[0-9]*/comm" in text:

            def stop_sidecar(p: Obj) -> None:
                kubelet.terminate_container(p, container, 0)
                kubelet.settle_phase(p)

            self._update_pod(namespace, name, pod["metadata"]["uid"], stop_sidecar)
            return "", "", 0
        return "", f"sh: mock server cannot run {text!r}\n", 127
