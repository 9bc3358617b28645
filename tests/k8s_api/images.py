"""What a container "image" is for the process kubelet: this machine's filesystem and project virtualenv.

No image is pulled or unpacked. Every image runs on the host's root filesystem with the project's
virtualenv first on ``PATH`` (so ``python``, ``ray`` and ``airflow`` in a command are the project's); what
differs per image is what its config would say: the default user (the project image runs as ``airflow``,
uid 50000, group 0, as the official Airflow image it builds on; other images as root), the entrypoint used
when a container sets no ``command``, and extra environment. An :class:`ImageRegistry` can be limited to a
set of references, so a pod naming an image nobody ships waits in ``ErrImagePull`` as on a cluster.
The working directory is ``/`` unless ``workingDir`` says otherwise; ``HOME`` is a private writable
directory (``/tmp/home``, inside the container's own ``/tmp``).
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The virtualenv that plays every image: the one running the tests.
VENV_BIN = str(Path(sys.executable).parent)
HOME = "/tmp/home"


@dataclass(frozen=True)
class Image:
    user: int = 0
    group: int = 0
    entrypoint: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        return {
            "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": HOME,
            **self.env,
        }


#: The project's image (Dockerfile: FROM apache/airflow, USER airflow).
PROJECT_IMAGE = Image(user=50000, group=0, env={"AIRFLOW_HOME": "/tmp/home/airflow"})


@dataclass
class ImageRegistry:
    """Image references (glob patterns) -> :class:`Image`; ``only`` limits which references exist at all."""

    images: dict[str, Image] = field(default_factory=lambda: {"ghcr.io/mlk8s/mlk8s:*": PROJECT_IMAGE})
    only: Sequence[str] | None = None

    def resolve(self, reference: str) -> Image | None:
        """The image config, or None when the reference cannot be pulled."""
        if self.only is not None and not any(fnmatch.fnmatchcase(reference, p) for p in self.only):
            return None
        for pattern, image in self.images.items():
            if fnmatch.fnmatchcase(reference, pattern):
                return image
        return Image()
