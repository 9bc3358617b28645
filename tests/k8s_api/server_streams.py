"""The streaming endpoints: pod logs (follow, timestamps, sinceSeconds, tailLines) and watches."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from tests.k8s_api import kubelet
from tests.k8s_api.errors import ApiError, not_found
from tests.k8s_api.http_handler import flag
from tests.k8s_api.resources import ResourceType
from tests.k8s_api.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)

Obj = dict[str, Any]


class StreamsMixin:
    """Part of :class:`tests.k8s_api.server.MockKubeServer` (its state lives there)."""

    def log_stream(self, namespace: str, name: str, query: Mapping[str, str]) -> tuple[Iterator[bytes] | bytes, bool]:
        """The log body (bytes) or, with ``follow``, an iterator of chunks ending when the container ends."""
        rt = self._types[("", "v1", "pods")]
        pod = self.get("pods", name, namespace)
        if pod is None:
            raise not_found(rt, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        init_names = [c["name"] for c in pod["spec"].get("initContainers") or []]
        container = query.get("container")
        if container is None:
            if len(names) > 1:
                also = f" or one of the init containers: [{' '.join(init_names)}]" if init_names else ""
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]{also}",
                )
            container = names[0]
        if container not in names + init_names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        statuses = (pod["status"].get("containerStatuses") or []) + (pod["status"].get("initContainerStatuses") or [])
        state = next((cs["state"] for cs in statuses if cs["name"] == container), None)
        if state is None or "waiting" in state:
            reason = ((state or {}).get("waiting") or {}).get("reason", "ContainerCreating")
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        timestamps = flag(query, "timestamps")
        since = time.time() - float(query["sinceSeconds"]) if "sinceSeconds" in query else None
        tail = int(query["tailLines"]) if "tailLines" in query else None
        uid = pod["metadata"]["uid"]
        runtime = self._runtimes[uid]

        def render(entries: list[tuple[float, str]]) -> bytes:
            out = []
            for t, line in entries:
                if since is not None and t < since:
                    continue
                prefix = (
                    kubelet.rfc3339_nano(kubelet.dt.datetime.fromtimestamp(t, kubelet.dt.UTC)) + " "
                    if timestamps
                    else ""
                )
                out.append(f"{prefix}{line}\n")
            return "".join(out).encode()

        def running() -> bool:
            current = self._objects.get(("", "pods", namespace, name))
            if current is None or current["metadata"]["uid"] != uid:
                return False
            for cs in (current["status"].get("containerStatuses") or []) + (
                current["status"].get("initContainerStatuses") or []
            ):
                if cs["name"] == container:
                    return "terminated" not in cs["state"]
            return False

        with self._lock:
            entries = list(runtime.logs.get(container, []))
        if tail is not None:
            entries = entries[-tail:] if tail else []
        if not flag(query, "follow"):
            return render(entries), False

        def follow() -> Iterator[bytes]:
            sent = len(runtime.logs.get(container, [])) if tail is not None else 0
            if tail is not None:
                yield render(entries)
            while True:
                with self._changed:
                    while len(runtime.logs.get(container, [])) <= sent and running() and not self._stopped.is_set():
                        self._changed.wait(0.5)
                    batch = list(runtime.logs.get(container, []))[sent:]
                    sent += len(batch)
                    alive = running() and not self._stopped.is_set()
                if batch:
                    yield render(batch)
                if not alive:
                    return

        return follow(), True

    def watch_stream(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Iterator[bytes]:
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"))
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc
        deadline = time.time() + float(query.get("timeoutSeconds", 60))
        with self._lock:
            exact = query.get("resourceVersion") not in (None, "", "0")
            start_rv = int(query["resourceVersion"]) if exact else self._rv
            initial: list[Obj] = []
            if not exact:
                # No resourceVersion (or "0", "any"): the watch starts with synthetic ADDED events for what exists.
                initial = self.list_objects(rt, namespace, query)["items"]
        for obj in initial:
            obj.setdefault("apiVersion", rt.api_version)
            obj.setdefault("kind", rt.kind)
            yield (json.dumps({"type": "ADDED", "object": obj}) + "\n").encode()
        index = next((i for i, h in enumerate(self._history) if h[0] > start_rv), len(self._history))

        def wanted(h: tuple[int, str, str, str, Obj]) -> bool:
            _, _, group, plural, obj = h
            meta = obj["metadata"]
            return (
                group == rt.group
                and plural == rt.plural
                and (namespace is None or meta.get("namespace") == namespace)
                and labels(meta.get("labels") or {})
                and fields(obj)
            )

        while time.time() < deadline and not self._stopped.is_set():
            with self._changed:
                if index >= len(self._history):
                    self._changed.wait(min(0.5, max(0.0, deadline - time.time())))
                batch = self._history[index:]
                index += len(batch)
            for h in batch:
                if wanted(h):
                    yield (json.dumps({"type": h[1], "object": h[4]}) + "\n").encode()
