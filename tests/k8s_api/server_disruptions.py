"""Disruptions: PodDisruptionBudget status, the Eviction API, node drains, preemptions and evictions."""

from __future__ import annotations

import math
from typing import Any

from tests.k8s_api import kubelet
from tests.k8s_api.errors import ApiError, not_found
from tests.k8s_api.kubelet import Disruption, as_disruption
from tests.k8s_api.selectors import (
    match_label_selector_object,
)

Obj = dict[str, Any]


class DisruptionsMixin:
    """Part of :class:`tests.k8s_api.server.MockKubeServer` (its state lives there)."""

    def disrupt_pod(
        self, namespace: str, name: str, disruption: Disruption | str | tuple[str, str] = "preempted"
    ) -> Obj | None:
        """Take a pod away now: DisruptionTarget condition, containers killed, maybe the object deleted."""
        how = as_disruption(disruption)
        assert how is not None
        pod = self.get("pods", name, namespace)
        if pod is None:
            raise KeyError(f"no pod {namespace}/{name}")
        uid = pod["metadata"]["uid"]
        event_reason = {"PreemptionByScheduler": "Preempted", "TerminationByKubelet": "Evicted"}.get(
            how.condition_reason or "", "Killing"
        )
        self._record_event(pod, event_reason, how.message, "Warning" if event_reason == "Evicted" else "Normal")
        if self._runs(pod):
            return self._disrupt_running(pod, how)
        runtime = self._runtimes.get(uid)
        if runtime is not None:
            runtime.stop.set()
        updated = self._update_pod(namespace, name, uid, lambda p: kubelet.disrupt(p, how))
        if how.vanish and updated is not None:
            self._delete_object(self._types[("", "v1", "pods")], namespace, name)
        return updated

    def _disrupt_running(self, pod: Obj, how: Disruption) -> Obj | None:
        """A disruption of a really running pod: the condition first, then the kubelet stops it.

        Exit code 137 presets (a kubelet eviction, a lost node) kill at once; the others (preemption, the
        Eviction API, the taint manager) give the pod its terminationGracePeriodSeconds, as a cluster does.
        """
        from tests.k8s_api.pod_worker import Termination

        assert self.process_kubelet is not None
        meta = pod["metadata"]

        def mark(p: Obj) -> None:
            if how.condition_reason:
                kubelet.set_condition(
                    p["status"],
                    kubelet.condition("DisruptionTarget", True, kubelet.now(), how.condition_reason, how.message),
                )

        updated = self._update_pod(meta["namespace"], meta["name"], meta["uid"], mark)
        if how.vanish:
            return self._delete_gracefully(updated or pod, None if how.exit_code != 137 else 0)
        grace = 0.0 if how.exit_code == 137 else float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.process_kubelet.terminate(
            meta["uid"], Termination(grace, delete=False, phase=how.phase, reason=how.pod_reason, message=how.message)
        )
        return updated

    def _pdb_status(self, pdb: Obj) -> Obj:
        """What the disruption controller would report, from the pods the PDB selects right now."""
        spec = pdb.get("spec") or {}
        pods = [
            p
            for p in self.objects("pods", pdb["metadata"]["namespace"])
            if match_label_selector_object(spec.get("selector"), p["metadata"].get("labels") or {})
            and p["status"].get("phase") not in ("Succeeded", "Failed")
        ]
        healthy = sum(
            1
            for p in pods
            if p["status"].get("phase") == "Running"
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        )
        expected = len(pods)
        bare = any(not any(ref.get("controller") for ref in p["metadata"].get("ownerReferences") or []) for p in pods)

        def scaled(value: Any) -> int:
            if isinstance(value, str) and value.endswith("%"):
                return math.ceil(expected * int(value[:-1]) / 100)
            return int(value)

        computable = True
        if "minAvailable" in spec:
            min_available = spec["minAvailable"]
            if isinstance(min_available, str) and bare:
                computable = False
            desired = scaled(min_available)
        else:
            max_unavailable = spec.get("maxUnavailable", 0)
            # The real disruption controller needs a controller with a scale to count expected pods for
            # maxUnavailable and percentages; bare pods (an operator's training pod) make the PDB block all.
            computable = not bare
            desired = max(0, expected - scaled(max_unavailable))
        allowed = max(0, healthy - desired) if computable else 0
        return {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if allowed > 0 else "False",
                    "reason": "SufficientPods" if allowed > 0 else ("InsufficientPods" if computable else "SyncFailed"),
                    "message": "" if computable else "found no controllers for pod",
                    "lastTransitionTime": kubelet.rfc3339(kubelet.now()),
                    "observedGeneration": pdb["metadata"].get("generation", 1),
                }
            ],
        }

    def drain_node(self, node: str) -> dict[str, str]:
        """``kubectl drain``: evict every running pod on the node through the Eviction API (PDBs apply).

        Returns each pod's outcome, ``evicted`` or the API's refusal, as ``namespace/name -> outcome``.
        """
        outcome: dict[str, str] = {}
        for pod in self.objects("pods"):
            if pod["spec"].get("nodeName") != node or pod["status"].get("phase") in ("Succeeded", "Failed"):
                continue
            ident = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            try:
                self._evict(pod["metadata"]["namespace"], pod["metadata"]["name"], None)
                outcome[ident] = "evicted"
            except ApiError as exc:
                outcome[ident] = f"{exc.code} {exc.reason}: {exc.message}"
        return outcome

    def _evict(self, namespace: str, name: str, body: Any) -> Obj:
        pods_rt = self._types[("", "v1", "pods")]
        pod = self.get("pods", name, namespace)
        if pod is None:
            raise not_found(pods_rt, name)
        labels = pod["metadata"].get("labels") or {}
        healthy = pod["status"].get("phase") == "Running" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or []
        )
        if pod["status"].get("phase") not in ("Succeeded", "Failed"):
            for pdb in self.objects("poddisruptionbudgets", namespace, group="policy"):
                if not match_label_selector_object((pdb.get("spec") or {}).get("selector"), labels):
                    continue
                status = self._pdb_status(pdb)
                if not healthy:
                    # An unready pod does no work: AlwaysAllow evicts it; IfHealthyBudget (the default) does
                    # when the budget's healthy pods are already enough.
                    policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
                    if policy == "AlwaysAllow" or status["currentHealthy"] >= status["desiredHealthy"]:
                        continue
                if status["disruptionsAllowed"] < 1:
                    raise ApiError(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        {
                            "causes": [
                                {
                                    "reason": "DisruptionBudget",
                                    "message": f"The disruption budget {pdb['metadata']['name']} needs "
                                    f"{status['desiredHealthy']} healthy pods and has {status['currentHealthy']} "
                                    "currently",
                                }
                            ]
                        },
                    )
        if self._runs(pod):
            options = (body or {}).get("deleteOptions") or {} if isinstance(body, dict) else {}
            how = Disruption.evicted_by_api()

            def mark(p: Obj) -> None:
                kubelet.set_condition(
                    p["status"],
                    kubelet.condition("DisruptionTarget", True, kubelet.now(), how.condition_reason, how.message),
                )

            self._record_event(pod, "Killing", how.message)
            marked = self._update_pod(namespace, name, pod["metadata"]["uid"], mark) or pod
            self._delete_gracefully(marked, options.get("gracePeriodSeconds"))
        else:
            self.disrupt_pod(namespace, name, Disruption.evicted_by_api())
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
