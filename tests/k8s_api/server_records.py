"""What the server keeps beside the objects: a record of each request served, each pod's logs and script."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from tests.k8s_api.kubelet import PodScript


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    status: int
    #: The authenticated user's name (None when the request was refused before authentication).
    user: str | None = None


@dataclass
class PodRuntime:
    """What the kubelet keeps about a pod beside its API object: logs and the script being played."""

    script: PodScript | None = None
    logs: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
