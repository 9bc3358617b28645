"""The recorded calls of an identity, judged against a manifest's RBAC: both directions fail."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.k8s_api import MockKubeServer
from tests.k8s_api.audit import rbac_usage
from tests.k8s_api.rbac import UserInfo

NS = "mlk8s"
WORKER = UserInfo.service_account("airflow", "worker")


def manifest(*rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},  # other kinds are ignored
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "worker", "namespace": NS},
            "rules": list(rules),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "worker", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "worker"},
            "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": "airflow"}],
        },
    ]


def test_rbac_usage_flags_ungranted_calls_and_unused_grants() -> None:
    granted = manifest(
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    )
    with MockKubeServer(rbac=True, namespaces=("airflow", NS)) as server:
        server.put_object(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "worker", "namespace": "airflow"}}
        )
        for obj in granted[1:]:
            server.put_object(obj)
        cfg = client.Configuration()
        cfg.host = server.url
        cfg.api_key = {"BearerToken": server.issue_token(WORKER)}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        core = client.CoreV1Api(client.ApiClient(cfg))
        core.list_namespaced_pod(NS)
        with pytest.raises(client.exceptions.ApiException) as denied:
            core.list_namespaced_event(NS)  # the manifest lacks it
        assert denied.value.status == 403
        records = list(server.audit)

    usage = rbac_usage(records, granted, WORKER)
    assert not usage.ok
    assert [r.describe() for r in usage.ungranted] == ["list events [core] in mlk8s"]
    assert sorted(g.describe().split(" from ")[0] for g in usage.unused) == [
        "delete pods [core]",
        "get pods [core]",
        "get pods/log [core]",
    ]
    assert "not granted: list events [core] in mlk8s" in usage.explain()

    exact = manifest(
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    )
    assert rbac_usage(records, exact, WORKER).ok
    assert rbac_usage(records, exact, "system:serviceaccount:airflow:nobody").calls == []
