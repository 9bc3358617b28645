"""Priority admission: a pod's PriorityClass must exist, and gives the pod its priority."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.k8s_api import MockKubeServer


def test_priority_class_names_resolve_or_refuse_the_pod() -> None:
    with MockKubeServer(admission=("Priority",)) as server, server.api_client() as api:
        client.SchedulingV1Api(api).create_priority_class(
            {"metadata": {"name": "mlk8s-critical"}, "value": 100000, "preemptionPolicy": "PreemptLowerPriority"}
        )
        core = client.CoreV1Api(api)
        body = {
            "metadata": {"name": "p"},
            "spec": {"priorityClassName": "mlk8s-critical", "containers": [{"name": "c", "image": "busybox:1.36"}]},
        }
        created = core.create_namespaced_pod("mlk8s", body)
        assert (created.spec.priority, created.spec.preemption_policy) == (100000, "PreemptLowerPriority")
        body["metadata"]["name"], body["spec"]["priorityClassName"] = "q", "mlk8s-critcal"
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_pod("mlk8s", body)
        assert refused.value.status == 403
        assert (
            json.loads(refused.value.body)["message"]
            == 'pods "q" is forbidden: no PriorityClass with name mlk8s-critcal was found'
        )
        del body["spec"]["priorityClassName"]
        assert core.create_namespaced_pod("mlk8s", body).spec.priority == 0


def test_unknown_admission_plugins_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown admission plugins"):
        MockKubeServer(admission=("PodSecurityPolicy",))
