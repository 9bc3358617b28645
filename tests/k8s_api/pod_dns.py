"""Name resolution inside pods: a kubelet-style /etc/hosts that also carries the cluster's Service names.

A cluster resolves ``<svc>.<ns>.svc.cluster.local`` (and, from the same namespace, ``<svc>``) through
CoreDNS to a ClusterIP that kube-proxy forwards to a ready pod. Here there is no DNS server and no
kube-proxy, so each pod's /etc/hosts maps every Service name form to the IPs of the pods the Service
selects, as a headless Service's DNS records would: ready pods only, unless the Service sets
``publishNotReadyAddresses``. The kubelet rewrites the file in place whenever pods or Services change (the
bind mount in the pod keeps pointing at the same inode). resolv.conf points at a loopback address nothing
listens on, so any other name fails at once instead of waiting for a DNS timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tests.k8s_api.selectors import match_label_selector_object

CLUSTER_DOMAIN = "cluster.local"

RESOLV_CONF = (
    "# Written by the mock kubelet: no cluster DNS; names resolve from /etc/hosts only.\n"
    "nameserver 127.0.0.53\n"
    f"search {{namespace}}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
    "options ndots:5 timeout:1 attempts:1\n"
)


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])


def service_endpoints(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """The pod IPs behind a Service, as its EndpointSlice would list them."""
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return []
    namespace = service["metadata"].get("namespace")
    include_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    ips = []
    for pod in pods:
        if pod["metadata"].get("namespace") != namespace or pod["metadata"].get("deletionTimestamp"):
            continue
        ip = pod["status"].get("podIP")
        if not ip or pod["status"].get("phase") != "Running":
            continue
        if match_label_selector_object({"matchLabels": selector}, pod["metadata"].get("labels") or {}) and (
            include_not_ready or _ready(pod)
        ):
            ips.append(ip)
    return sorted(ips)


KUBERNETES_NAMES = (
    f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
    "kubernetes.default.svc",
    "kubernetes.default",
)


def hosts_file(
    pod: Mapping[str, Any],
    services: Iterable[Mapping[str, Any]],
    pods: list[Mapping[str, Any]],
    extra: Mapping[str, list[str]] | None = None,
) -> str:
    """The /etc/hosts of ``pod``: loopback, its own name, ``extra`` (address -> names), then one line per
    (Service, backing pod IP)."""
    meta = pod["metadata"]
    lines = [
        "# Kubernetes-managed hosts file (mock kubelet; Service names added in place of cluster DNS).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    own_ip = pod["status"].get("podIP")
    hostname = (pod.get("spec") or {}).get("hostname") or meta["name"]
    if own_ip:
        lines.append(f"{own_ip}\t{hostname}")
    for address, names in (extra or {}).items():
        lines.append(f"{address}\t{' '.join(names)}")
    for service in sorted(services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])):
        name, namespace = service["metadata"]["name"], service["metadata"].get("namespace", "")
        names = [f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}", f"{name}.{namespace}.svc", f"{name}.{namespace}"]
        if namespace == meta.get("namespace"):
            names.append(name)
        for ip in service_endpoints(service, pods):
            lines.append(f"{ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str) -> str:
    return RESOLV_CONF.format(namespace=namespace)
