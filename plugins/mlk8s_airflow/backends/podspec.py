"""Checks on a built ``V1Pod`` before anything is launched, shared by both backends.

KubernetesPodOperator accepts a pod with no command (the image's ENTRYPOINT runs) or a malformed image and
only fails once the kubelet tries to start it, minutes later. We fail at once, naming the setting and the fix.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes.client import models as k8s


class PodSpecError(ValueError):
    """The pod cannot be launched as asked; the message names the setting and the fix."""


# The grammar of an OCI image reference (registry/path:tag@digest), simplified but strict enough to catch
# blanks, spaces, upper case in the repository and unclosed templates.
_IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def check_image(image: str | None, *, setting: str = "image") -> None:
    if not image or not image.strip():
        raise PodSpecError(f"{setting} is empty: set image= to the mlk8s image, e.g. 'ghcr.io/acme/mlk8s:0.1.0'.")
    if "{{" in image or "}}" in image:
        raise PodSpecError(f"{setting} {image!r} still holds an unrendered template: check its Jinja expression.")
    if not _IMAGE_RE.match(image):
        raise PodSpecError(
            f"{setting} {image!r} is not a valid image reference: use [registry/]repository[:tag][@digest] "
            "with a lower-case repository and no spaces."
        )


def main_container(pod: k8s.V1Pod, name: str) -> k8s.V1Container:
    containers = (pod.spec.containers if pod.spec else None) or []
    for container in containers:
        if container.name == name:
            return container
    names = ", ".join(c.name for c in containers) or "none"
    raise PodSpecError(f"the pod has no container named {name!r} (it has: {names}); check base_container_name.")


def check_pod(pod: k8s.V1Pod, *, container_name: str, require_command: bool) -> None:
    """Raise ``PodSpecError`` if the pod's main container cannot be launched."""
    container = main_container(pod, container_name)
    check_image(container.image)
    if require_command and not (container.command or container.args):
        raise PodSpecError(
            "the pod's main container has no command: set cmds=[...] (and arguments=[...]) on the task; "
            "the local backend runs that command and cannot read an image's ENTRYPOINT."
        )
    for env in container.env or []:
        if not env.name or not _ENV_NAME_RE.match(env.name):
            raise PodSpecError(
                f"env var name {env.name!r} is invalid: use letters, digits, '_', '-' or '.', "
                "not starting with a digit."
            )
        if env.value is not None and env.value_from is not None:
            raise PodSpecError(f"env var {env.name!r} sets both value and value_from: keep one.")
