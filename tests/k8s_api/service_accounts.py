"""ServiceAccounts as the control plane handles them: per-namespace defaults, admission, the token volume.

* every namespace gets the ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap (the service
  account and root-CA controllers' work);
* on pod creation the ServiceAccount admission plugin refuses a pod whose ServiceAccount does not exist
  (``error looking up service account ns/name: serviceaccount "name" not found``) and, unless
  ``automountServiceAccountToken`` is false on the pod (else on the ServiceAccount), adds the
  ``kube-api-access-<suffix>`` projected volume (token, ``ca.crt``, namespace) mounted read-only at
  /var/run/secrets/kubernetes.io/serviceaccount in every container;
* the kubelet writes that volume: a bearer token for ``system:serviceaccount:<ns>:<name>``, the CA of the
  API server's in-cluster endpoint, the namespace; and sets ``KUBERNETES_SERVICE_HOST``/``PORT`` in every
  container, as it does for the ``kubernetes`` Service.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]

TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA = "kube-root-ca.crt"


def namespace_defaults(namespace: str, ca_pem: str | None) -> list[Obj]:
    objects: list[Obj] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}}
    ]
    if ca_pem is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA, "namespace": namespace},
                "data": {"ca.crt": ca_pem},
            }
        )
    return objects


class ServiceAccountMissing(Exception):
    pass


def admit(pod: Obj, account: Mapping[str, Any] | None) -> None:
    """Check the pod's ServiceAccount and add the token volume (in place), as the admission plugin does."""
    spec = pod["spec"]
    namespace = pod["metadata"]["namespace"]
    name = spec.get("serviceAccountName") or "default"
    if account is None:
        raise ServiceAccountMissing(
            f'pods "{pod["metadata"]["name"]}" is forbidden: error looking up service account {namespace}/{name}: '
            f'serviceaccount "{name}" not found'
        )
    spec["serviceAccountName"] = name
    spec.setdefault("serviceAccount", name)
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = account.get("automountServiceAccountToken", True)
    if not automount or any(
        m.get("mountPath") == TOKEN_MOUNT for c in spec.get("containers") or [] for m in c.get("volumeMounts") or []
    ):
        return
    volume_name = f"kube-api-access-{secrets.token_hex(3)[:5]}"
    spec.setdefault("volumes", []).append(
        {
            "name": volume_name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            container.setdefault("volumeMounts", []).append(
                {"name": volume_name, "mountPath": TOKEN_MOUNT, "readOnly": True}
            )


def kubernetes_service_env(host: str, port: int) -> dict[str, str]:
    """The variables the kubelet sets for the ``kubernetes`` Service in every container."""
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }
