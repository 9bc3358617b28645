"""What the API server does to pods besides storing them: fill in defaults, refuse forbidden spec updates."""

from __future__ import annotations

import copy
from typing import Any

from tests.k8s_api.errors import ApiError

Obj = dict[str, Any]


def default_pod(pod: Obj) -> None:
    """The defaults the API server fills in on create, so reads look like a real cluster's."""
    spec = pod.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = str(c.get("image", ""))
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            c.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent")
            c.setdefault("resources", {})


_MUTABLE_POD_FIELDS = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def check_pod_update(current: Obj, new: Obj) -> None:
    def frozen(spec: Any) -> Any:
        spec = copy.deepcopy(spec or {})
        for key in _MUTABLE_POD_FIELDS:
            spec.pop(key, None)
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                c.pop("image", None)
        return spec

    if frozen(current.get("spec")) != frozen(new.get("spec")):
        raise ApiError(
            422,
            "Invalid",
            f'Pod "{current["metadata"]["name"]}" is invalid: spec: Forbidden: pod updates may not change fields '
            "other than `spec.containers[*].image`, `spec.initContainers[*].image`, "
            "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), "
            "`spec.terminationGracePeriodSeconds`",
            {
                "name": current["metadata"]["name"],
                "kind": "Pod",
                "causes": [{"reason": "FieldValueForbidden", "field": "spec"}],
            },
        )
