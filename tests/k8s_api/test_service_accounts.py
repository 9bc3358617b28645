"""ServiceAccount admission: the account must exist; the token volume is added unless automount is off."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.k8s_api import MockKubeServer
from tests.k8s_api.service_accounts import TOKEN_MOUNT

NS = "mlk8s"


@pytest.fixture
def core() -> Iterator[client.CoreV1Api]:
    with MockKubeServer(admission=("ServiceAccount",)) as server, server.api_client() as api:
        yield client.CoreV1Api(api)


def body(name: str, account: str | None = None, **spec: object) -> dict[str, object]:
    pod_spec: dict[str, object] = {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec}
    if account:
        pod_spec["serviceAccountName"] = account
    return {"metadata": {"name": name}, "spec": pod_spec}


def test_every_namespace_has_a_default_account_and_pods_get_its_token(core: client.CoreV1Api) -> None:
    assert core.read_namespaced_service_account("default", NS).metadata.name == "default"
    pod = core.create_namespaced_pod(NS, body("p"))
    assert pod.spec.service_account_name == "default"
    volume = next(v for v in pod.spec.volumes if v.name.startswith("kube-api-access-"))
    assert [s.service_account_token.path for s in volume.projected.sources if s.service_account_token] == ["token"]
    mounts = {m.mount_path: m for m in pod.spec.containers[0].volume_mounts}
    assert mounts[TOKEN_MOUNT].read_only is True and mounts[TOKEN_MOUNT].name == volume.name


def test_a_missing_account_is_refused_and_automount_false_adds_nothing(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(NS, body("p", "mlk8s-pod"))
    assert json.loads(refused.value.body)["message"] == (
        'pods "p" is forbidden: error looking up service account mlk8s/mlk8s-pod: serviceaccount "mlk8s-pod" not found'
    )
    core.create_namespaced_service_account(
        NS, {"metadata": {"name": "mlk8s-pod"}, "automountServiceAccountToken": False}
    )
    pod = core.create_namespaced_pod(NS, body("p", "mlk8s-pod"))
    assert not pod.spec.volumes and not pod.spec.containers[0].volume_mounts
    on_pod = core.create_namespaced_pod(NS, body("q", "mlk8s-pod", automountServiceAccountToken=True))
    assert any(v.name.startswith("kube-api-access-") for v in on_pod.spec.volumes)
