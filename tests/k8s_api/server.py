"""A stateful mock Kubernetes API server, spoken to over real HTTP by the real ``kubernetes`` client.

Why a server and not a mocked client: the operators go through ``KubernetesHook``, KPO's ``PodManager`` and
``CustomObjectsApi``, which serialise, pick content types, retry and deserialise. Only a server that speaks the
wire protocol tests all of that. It keeps real state (uid, creationTimestamp, resourceVersion bumped on every
write, generation bumped on spec changes), validates every write against the official schemas (422 naming the
field), and answers 404 / 409 AlreadyExists / 409 Conflict (stale resourceVersion) like the real one.

Served: pods (+ status, log with follow/timestamps, exec, eviction honouring PDBs), events, secrets,
configmaps, services, serviceaccounts, namespaces, nodes (read-only), policy/v1 PodDisruptionBudgets (status
computed from the pods), rbac/v1 Roles, RoleBindings, ClusterRoles, ClusterRoleBindings, scheduling/v1
PriorityClasses, and KubeRay's ray.io/v1 RayCluster and RayJob from their CRDs. List supports labelSelector,
fieldSelector and watch.

Opt-in fidelity, each in its own module: bearer-token authentication and RBAC on every request, with an
audit record per check (``rbac=True``: server_access.py, rbac.py, audit.py); admission plugins
(``admission=("ServiceAccount", "Priority", "PodSecurity")``); a kubelet that really runs pods in their own
network namespaces, with graceful deletion (``run_pods()``: runtime.py); a KubeRay operator
(``kuberay_operator=True``: kuberay.py). Without them pods are played by scripts (server_scripts.py), which
keeps unit tests fast.

Not served (a request answers 404 or 415): server-side apply, deleteCollection, pagination (limit/continue),
finalizers, admission webhooks, CEL validation rules of CRDs, the scheduler's preemption, Endpoints objects.

This file is the store and the CRUD verbs (about 700 lines: the request paths share the locking and the
resourceVersion bookkeeping, so they stay together); everything else is in the mixins it inherits.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.k8s_api import kubelet, priority, service_accounts
from tests.k8s_api.audit import AuditRecord
from tests.k8s_api.authentication import ADMIN, Tokens
from tests.k8s_api.errors import ApiError, conflict, invalid, not_found
from tests.k8s_api.http_handler import ApiHandler
from tests.k8s_api.kubelet import DEFAULT_NODES, Node, PodScript
from tests.k8s_api.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from tests.k8s_api.pod_rules import check_pod_update, default_pod
from tests.k8s_api.rbac import BOOTSTRAP_POLICY
from tests.k8s_api.resources import ResourceType, builtin_types
from tests.k8s_api.schemas import ObjectInvalid, kuberay_resources, validate_object
from tests.k8s_api.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from tests.k8s_api.server_access import AccessMixin
from tests.k8s_api.server_disruptions import DisruptionsMixin
from tests.k8s_api.server_kubelet import KubeletMixin
from tests.k8s_api.server_records import PodRuntime, RecordedRequest
from tests.k8s_api.server_scripts import ScriptedPodsMixin
from tests.k8s_api.server_streams import StreamsMixin

if TYPE_CHECKING:
    from tests.k8s_api.runtime import ProcessKubelet

#: The admission plugins the server can run, in the API server's order.
ADMISSION_PLUGINS = ("ServiceAccount", "Priority", "PodSecurity")

Obj = dict[str, Any]


@dataclass
class Fault:
    """Answer the next ``times`` matching requests with ``code`` instead of serving them."""

    code: int
    method: str | None
    path: re.Pattern[str] | None
    times: int
    reason: str
    message: str
    retry_after: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(path) is not None)
        )


_FAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class MockKubeServer(AccessMixin, KubeletMixin, ScriptedPodsMixin, DisruptionsMixin, StreamsMixin):
    """The mock API server. Start it with :meth:`start` (or the ``k8s_server`` fixture); stop with :meth:`stop`.

    Test-side control (plain Python methods, thread-safe): :meth:`script_pod` scripts the next pod that
    matches; :meth:`disrupt_pod`, :meth:`emit_log`, :meth:`finish_pod` drive a pod by hand;
    :meth:`inject_fault` makes the next N matching requests fail; :meth:`get`, :meth:`objects`, :meth:`put_object`
    read and seed state behind the API; :attr:`requests` records every request served.
    """

    def __init__(
        self,
        *,
        namespaces: Sequence[str] = ("default", "kube-system", "mlk8s"),
        nodes: Sequence[Node] = DEFAULT_NODES,
        token: str | None = None,
        rbac: bool = False,
        admission: Sequence[str] = (),
        host: str = "127.0.0.1",
        step_s: float = 0.05,
        with_kuberay: bool = True,
        kuberay_operator: bool = False,
    ) -> None:
        #: Bind address; the cluster-in-a-box also listens where pods can reach it (see tests/cluster).
        self.host = host
        #: Authorize every request by the RBAC objects stored in the server (403 otherwise).
        self.rbac = rbac
        unknown = set(admission) - set(ADMISSION_PLUGINS)
        if unknown:
            raise ValueError(f"unknown admission plugins {sorted(unknown)}; use any of {list(ADMISSION_PLUGINS)}")
        #: Admission plugins on (API server names): ``PodSecurity`` (namespace labels, tests/k8s_api/admission.py),
        #: ``ServiceAccount`` (account must exist, token volumes, ``default`` accounts: service_accounts.py),
        #: ``Priority`` (priorityClassName -> priority: priority.py).
        self.admission = tuple(admission)
        self.pod_security = "PodSecurity" in self.admission
        self.service_accounts = "ServiceAccount" in self.admission
        #: ``(address, port)`` of the HTTPS endpoint pods use (:meth:`serve_in_cluster`), and its CA.
        self.in_cluster: tuple[str, int] | None = None
        self.ca_pem: str | None = None
        self._https: ThreadingHTTPServer | None = None
        self.tokens = Tokens()
        #: Every authorization check made (identity, verb, resource, ..., allowed); see tests/k8s_api/audit.py.
        self.audit: list[AuditRecord] = []
        #: ``(pod name, message)`` for pods that the namespace's ``audit`` Pod Security level flags.
        self.pod_security_audit: list[tuple[str, str]] = []
        self._request_context = threading.local()
        #: The test set-up's own credential: a given static token, or one minted when RBAC is on.
        self.token = token
        if token is None and rbac:
            self.token = self.tokens.issue(ADMIN)
        elif token is not None:
            self.tokens.register(token, ADMIN)
        #: Pause between the steps the kubelet plays (scheduled, started, each log line, exit).
        self.step_s = step_s
        self.nodes = list(nodes)
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in builtin_types():
            self._types[(rt.group, rt.version, rt.plural)] = rt
        if with_kuberay:
            for cr in kuberay_resources():
                rt = ResourceType(cr.group, cr.version, cr.plural, cr.kind, cr.namespaced, cr.has_status, cr)
                self._types[(rt.group, rt.version, rt.plural)] = rt
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str, str, str], Obj] = {}
        self._rv = 100
        self._history: list[tuple[int, str, str, str, Obj]] = []  # rv, event type, group, plural, object
        self._runtimes: dict[str, PodRuntime] = {}  # by pod uid
        self._scripts: list[tuple[str | dict[str, str], PodScript]] = []
        self._faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        #: Run the mock KubeRay operator (tests/k8s_api/kuberay.py): RayClusters get head and worker pods.
        self.kuberay_operator = kuberay_operator
        #: Set by :meth:`run_pods`: pods no script claims are really run (tests/k8s_api/runtime.py).
        self.process_kubelet: ProcessKubelet | None = None
        self._reconcile_lock = threading.Lock()
        #: What the KubeRay stand-in failed to create (an admission refusal, a schema error), newest last.
        self.kuberay_errors: list[str] = []
        self._reconcile_pending: set[tuple[str, str]] = set()
        self._reconciled_generation: dict[tuple[str, str], int] = {}
        for ns in namespaces:
            self.put_object(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}}
            )
        for node in self.nodes:
            self.put_object(node.to_dict())
        for policy in BOOTSTRAP_POLICY:
            self.put_object(policy)

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> MockKubeServer:
        handler = type("Handler", (ApiHandler,), {"api": self})
        self._httpd = ThreadingHTTPServer((self.host, 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-kube-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.process_kubelet is not None:
            self.process_kubelet.stop()
        self._stopped.set()
        with self._changed:
            for rt in self._runtimes.values():
                rt.stop.set()
            self._changed.notify_all()
        for httpd in (self._httpd, self._https):
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()

    def __enter__(self) -> MockKubeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def api_client(self) -> Any:
        """A real ``kubernetes.client.ApiClient`` pointed at this server."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        if self.token:
            cfg.api_key = {"BearerToken": self.token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(cfg)

    # --- authentication, authorization, admission warnings (called by the HTTP handler) -----------------------

    # --- state access for tests ---------------------------------------------------------------------------

    def resource_type(self, plural: str, group: str = "", version: str | None = None) -> ResourceType:
        for (g, v, p), rt in self._types.items():
            if p == plural and g == group and (version is None or v == version):
                return rt
        raise KeyError(f"resource {plural!r} of group {group!r} is not served")

    def get(self, plural: str, name: str, namespace: str | None = None, group: str = "") -> Obj | None:
        with self._lock:
            obj = self._objects.get((group, plural, namespace or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, plural: str, namespace: str | None = None, group: str = "") -> list[Obj]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for (g, p, ns, _), o in sorted(
                    self._objects.items(), key=lambda kv: kv[1]["metadata"]["resourceVersion"]
                )
                if g == group and p == plural and (namespace is None or ns == namespace)
            ]

    def put_object(self, obj: Obj) -> Obj:
        """Store an object as the cluster would have it, unvalidated (seed nodes, status, foreign objects)."""
        group = obj["apiVersion"].rpartition("/")[0]
        rt = next(r for r in self._types.values() if r.group == group and r.kind == obj["kind"])
        with self._changed:
            stored = self._stamp(copy.deepcopy(obj), None)
            self._write(rt, stored, "ADDED")
        if rt.plural == "namespaces":
            self._namespace_defaults(stored["metadata"]["name"])
        return copy.deepcopy(stored)

    def _namespace_defaults(self, namespace: str) -> None:
        """The ``default`` ServiceAccount and the root CA ConfigMap every namespace gets."""
        if not self.service_accounts:
            return
        for obj in service_accounts.namespace_defaults(namespace, self.ca_pem):
            plural = "serviceaccounts" if obj["kind"] == "ServiceAccount" else "configmaps"
            if self.get(plural, obj["metadata"]["name"], namespace) is None:
                self.put_object(obj)

    def log_lines(self, namespace: str, name: str, container: str | None = None) -> list[str]:
        with self._lock:
            pod = self._objects.get(("", "pods", namespace, name))
            if pod is None:
                raise KeyError(f"no pod {namespace}/{name}")
            runtime = self._runtimes[pod["metadata"]["uid"]]
            init = [c["name"] for c in pod["spec"].get("initContainers") or []]
            name_ = container if container in init else kubelet.main_container(pod, container)
            return [line for _, line in runtime.logs.get(name_, [])]

    def set_status(self, plural: str, name: str, namespace: str | None, status: Obj, group: str = "") -> Obj:
        """Write an object's status as its controller would (validated, resourceVersion bumped)."""
        rt = self.resource_type(plural, group)
        with self._changed:
            current = self._objects.get((rt.group, rt.plural, namespace or "", name))
            if current is None:
                raise not_found(rt, name)
            new = copy.deepcopy(current)
            new["status"] = copy.deepcopy(status)
            return self._update(rt, current, new, "status")

    # --- the mock KubeRay operator --------------------------------------------------------------------------

    def reconcile_rayclusters(self) -> None:
        """Reconcile every RayCluster now (the operator also does it in the background after each change)."""
        for cluster in self.objects("rayclusters", group="ray.io"):
            self._reconcile((cluster["metadata"]["namespace"], cluster["metadata"]["name"]))

    def _schedule_reconcile(self, ident: tuple[str, str], delay_s: float | None = None) -> None:
        if ident in self._reconcile_pending or self._stopped.is_set():
            return
        self._reconcile_pending.add(ident)
        timer = threading.Timer(self.step_s if delay_s is None else delay_s, self._reconcile, args=(ident,))
        timer.daemon = True
        timer.start()

    def _reconcile(self, ident: tuple[str, str]) -> None:
        from tests.k8s_api import kuberay

        with self._reconcile_lock:
            self._reconcile_pending.discard(ident)
            if not self._stopped.is_set():
                kuberay.reconcile(self, *ident)

    # --- faults ---------------------------------------------------------------------------------------------

    def inject_fault(
        self,
        code: int,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> Fault:
        """Answer the next ``times`` requests matching ``method`` and the regex ``path`` with ``code``."""
        fault = Fault(
            code=code,
            method=method.upper() if method else None,
            path=re.compile(path) if path else None,
            times=times,
            reason=_FAULT_REASONS.get(code, "InternalError"),
            message=message or f"injected fault {code}",
            retry_after=retry_after if retry_after is not None else (1 if code == 429 else None),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    # --- pod scripting ------------------------------------------------------------------------------------

    def _update_pod(self, namespace: str, name: str, uid: str, mutate: Any) -> Obj | None:
        """Apply a kubelet-side change to the pod's status; ``None`` when the pod is gone or replaced."""
        with self._changed:
            pod = self._objects.get(("", "pods", namespace, name))
            if pod is None or pod["metadata"]["uid"] != uid:
                return None
            new = copy.deepcopy(pod)
            mutate(new)
            stored = self._stamp(new, pod)
            # Binding and status writes are not spec changes a client made: generation stays.
            stored["metadata"]["generation"] = pod["metadata"].get("generation", 1)
            self._write(self._types[("", "v1", "pods")], stored, "MODIFIED")
            cluster = (stored["metadata"].get("labels") or {}).get("ray.io/cluster")
            if self.kuberay_operator and cluster and stored.get("status") != pod.get("status"):
                self._schedule_reconcile((namespace, cluster))
            return copy.deepcopy(stored)

    def _record_event(
        self, pod: Obj, reason: str, message: str, kind: str = "Normal", component: str = "kubelet"
    ) -> None:
        with self._changed:
            ev = self._stamp(kubelet.event(pod, reason, message, kind, component), None)
            self._write(self._types[("", "v1", "events")], ev, "ADDED")

    # --- storage ------------------------------------------------------------------------------------------

    def _stamp(self, obj: Obj, old: Obj | None) -> Obj:
        meta = obj.setdefault("metadata", {})
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = kubelet.rfc3339(kubelet.now())
            meta.setdefault("generation", 1)
        else:
            for key in ("uid", "creationTimestamp", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if old.get("spec") != obj.get("spec") and "generation" in meta:
                meta["generation"] += 1
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        return obj

    def _write(self, rt: ResourceType, obj: Obj, event: str) -> None:
        key = (
            rt.group,
            rt.plural,
            obj["metadata"].get("namespace", "") if rt.namespaced else "",
            obj["metadata"]["name"],
        )
        self._objects[key] = obj
        self._history.append((self._rv, event, rt.group, rt.plural, copy.deepcopy(obj)))
        self._changed.notify_all()
        if rt.plural in ("pods", "services") and self.process_kubelet is not None:
            self.process_kubelet.topology_changed()
        if self.kuberay_operator and rt.plural == "rayclusters" and rt.group == "ray.io":
            ident = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            if self._reconciled_generation.get(ident) != obj["metadata"].get("generation"):
                self._reconciled_generation[ident] = obj["metadata"].get("generation", 1)
                self._schedule_reconcile(ident)

    def _delete_object(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self._changed:
            key = (rt.group, rt.plural, namespace if rt.namespaced else "", name)
            obj = self._objects.pop(key, None)
            if obj is None:
                raise not_found(rt, name)
            self._rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._rv)
            obj["metadata"]["deletionTimestamp"] = kubelet.rfc3339(kubelet.now())
            self._history.append((self._rv, "DELETED", rt.group, rt.plural, copy.deepcopy(obj)))
            if self.kuberay_operator and rt.plural == "pods":
                cluster = (obj["metadata"].get("labels") or {}).get("ray.io/cluster")
                if cluster:
                    self._schedule_reconcile((namespace, cluster))
            runtime = self._runtimes.get(obj["metadata"]["uid"])
            if runtime is not None:
                runtime.stop.set()
            self._changed.notify_all()
        if rt.plural == "pods" and self._runs(obj):
            from tests.k8s_api.pod_worker import Termination

            assert self.process_kubelet is not None
            self.process_kubelet.terminate(obj["metadata"]["uid"], Termination(0.0, delete=False))
        if rt.plural in ("pods", "services") and self.process_kubelet is not None:
            self.process_kubelet.topology_changed()
        return obj

    # --- request handling (called by the HTTP handler) --------------------------------------------------------

    def _resolve(self, path: str) -> tuple[ResourceType, str | None, str | None, str | None]:
        """Map a URL path to (type, namespace, name, subresource); 404 for paths not served."""
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        rt = self._types.get((group, version, rest[0]))
        if rt is None or (namespace is not None and not rt.namespaced):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespace is not None and ("", "namespaces", "", namespace) not in self._objects:
            raise ApiError(
                404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
            )
        return rt, namespace, name, sub

    def _prepare(self, rt: ResourceType, body: Any, namespace: str | None, name: str | None) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", rt.api_version)
        obj.setdefault("kind", rt.kind)
        if obj["apiVersion"] != rt.api_version or obj["kind"] != rt.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({obj['apiVersion']}) does not match the expected API version "
                f"({rt.api_version}) or kind {obj['kind']} is not {rt.kind}",
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        if name is not None and meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if name is not None:
            meta["name"] = name
        return obj

    def _validate(self, rt: ResourceType, obj: Obj) -> None:
        try:
            validate_object(obj, rt.custom)
        except ObjectInvalid as exc:
            raise invalid(exc, rt.group) from exc

    def create(self, rt: ResourceType, namespace: str | None, body: Any, sub: str | None, name: str | None) -> Obj:
        if sub == "eviction" and rt.plural == "pods" and name:
            return self._evict(namespace or "", name, body)
        if name is not None or sub is not None or not rt.writable:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        obj = self._prepare(rt, body, namespace, None)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        meta.pop("resourceVersion", None)
        if rt.plural == "pods":
            default_pod(obj)
        if rt.has_status and rt.plural != "namespaces":
            obj.pop("status", None)
        if rt.plural == "pods" and self.service_accounts:
            account = self.get("serviceaccounts", obj["spec"].get("serviceAccountName") or "default", namespace)
            try:
                service_accounts.admit(obj, account)
            except service_accounts.ServiceAccountMissing as exc:
                raise ApiError(403, "Forbidden", str(exc), {"name": meta["name"], "kind": "pods"}) from exc
        self._validate(rt, obj)
        if rt.plural == "pods" and "Priority" in self.admission:
            try:
                priority.admit(obj, self.objects("priorityclasses", group="scheduling.k8s.io"))
            except priority.PriorityClassMissing as exc:
                raise ApiError(403, "Forbidden", str(exc), {"name": meta["name"], "kind": "pods"}) from exc
        if rt.plural == "pods" and self.pod_security:
            self._admit_pod(obj, namespace or "")
        with self._changed:
            key = (rt.group, rt.plural, namespace or "", meta["name"])
            if key in self._objects:
                resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{resource} "{meta["name"]}" already exists',
                    {"name": meta["name"], "group": rt.group, "kind": rt.plural},
                )
            if rt.plural == "pods":
                obj["status"] = kubelet.pending_status(obj)
            elif rt.plural == "poddisruptionbudgets":
                obj["status"] = {}
            stored = self._stamp(obj, None)
            self._write(rt, stored, "ADDED")
            if rt.plural == "pods":
                self._start_kubelet(stored)
        if rt.plural == "namespaces":
            self._namespace_defaults(meta["name"])
        return copy.deepcopy(stored)

    def read(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._lock:
            obj = self._objects.get((rt.group, rt.plural, namespace or "", name))
            if obj is None:
                raise not_found(rt, name)
            obj = copy.deepcopy(obj)
        if rt.plural == "poddisruptionbudgets":
            obj["status"] = self._pdb_status(obj)
        return obj

    def list_objects(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Obj:
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"))
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc
        with self._lock:
            items = [
                copy.deepcopy(o)
                for (g, p, ns, _), o in self._objects.items()
                if g == rt.group
                and p == rt.plural
                and (namespace is None or ns == namespace)
                and labels(o["metadata"].get("labels") or {})
                and fields(o)
            ]
            rv = str(self._rv)
        items.sort(key=lambda o: int(o["metadata"]["resourceVersion"]))
        for item in items:
            if rt.plural == "poddisruptionbudgets":
                item["status"] = self._pdb_status(item)
            if rt.custom is None:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        return {
            "apiVersion": rt.api_version,
            "kind": f"{rt.kind}List",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    def replace(self, rt: ResourceType, namespace: str | None, name: str, body: Any, sub: str | None) -> Obj:
        if not rt.writable:
            raise ApiError(405, "MethodNotAllowed", f"{rt.plural} are read-only in the mock server")
        obj = self._prepare(rt, body, namespace, name)
        with self._changed:
            current = self._objects.get((rt.group, rt.plural, namespace or "", name))
            if current is None:
                raise not_found(rt, name)
            return self._update(rt, current, obj, sub)

    def _update(self, rt: ResourceType, current: Obj, obj: Obj, sub: str | None) -> Obj:
        name = current["metadata"]["name"]
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv not in (None, "") and wanted_rv != current["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        if sub == "status":
            if not rt.has_status:
                raise ApiError(404, "NotFound", f"{rt.plural} have no status subresource")
            new = copy.deepcopy(current)
            new["status"] = obj.get("status")
            if new["status"] is None:
                new.pop("status")
        elif sub is None:
            new = obj
            if rt.has_status:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            if rt.plural == "pods":
                default_pod(new)  # the server defaults updates as it defaults creates
                check_pod_update(current, new)
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({sub})")
        self._validate(rt, new)
        comparable_new = {k: v for k, v in new.items() if k != "metadata"}
        comparable_old = {k: v for k, v in current.items() if k != "metadata"}
        meta_new = {
            k: v
            for k, v in new["metadata"].items()
            if k not in ("resourceVersion", "generation", "uid", "creationTimestamp")
        }
        meta_old = {
            k: v
            for k, v in current["metadata"].items()
            if k not in ("resourceVersion", "generation", "uid", "creationTimestamp")
        }
        if comparable_new == comparable_old and meta_new == meta_old:
            return copy.deepcopy(current)  # a no-op write does not bump resourceVersion, as in the real server
        stored = self._stamp(new, current)
        self._write(rt, stored, "MODIFIED")
        return copy.deepcopy(stored)

    def patch(
        self, rt: ResourceType, namespace: str | None, name: str, body: Any, content_type: str, sub: str | None
    ) -> Obj:
        if not rt.writable:
            raise ApiError(405, "MethodNotAllowed", f"{rt.plural} are read-only in the mock server")
        with self._changed:
            current = self._objects.get((rt.group, rt.plural, namespace or "", name))
            if current is None:
                raise not_found(rt, name)
            try:
                if content_type == "application/merge-patch+json":
                    if not isinstance(body, dict):
                        raise ApiError(
                            400,
                            "BadRequest",
                            "a merge patch must be a JSON object; to send a JSON patch (a list of operations) "
                            "set Content-Type application/json-patch+json (CustomObjectsApi: "
                            "_content_type='application/json-patch+json')",
                        )
                    patched = merge_patch(current, body)
                elif content_type == "application/json-patch+json":
                    patched = json_patch(current, body)
                elif content_type == "application/strategic-merge-patch+json" and rt.custom is None:
                    patched = strategic_merge_patch(current, body)
                else:
                    accepted = "application/json-patch+json, application/merge-patch+json"
                    if rt.custom is None:
                        accepted += ", application/strategic-merge-patch+json"
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - accepted media types include: {accepted}"
                        " (server-side apply is not supported by the mock server)",
                    )
            except PatchError as exc:
                code = 422 if "test operation failed" in str(exc) else 400
                raise ApiError(code, "Invalid" if code == 422 else "BadRequest", str(exc)) from exc
            if not isinstance(patched, dict):
                raise ApiError(400, "BadRequest", "the patch did not produce an object")
            patched = self._prepare(rt, patched, namespace, name)
            return self._update(rt, current, patched, sub)

    def delete(self, rt: ResourceType, namespace: str | None, name: str, body: Any) -> Obj:
        if not rt.writable:
            raise ApiError(405, "MethodNotAllowed", f"{rt.plural} are read-only in the mock server")
        with self._changed:
            current = self._objects.get((rt.group, rt.plural, namespace or "", name))
            if current is None:
                raise not_found(rt, name)
            pre = (body or {}).get("preconditions") or {} if isinstance(body, dict) else {}
            if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise conflict(rt, name)
            if rt.plural == "pods" and self._runs(current) and current["spec"].get("nodeName"):
                grace = body.get("gracePeriodSeconds") if isinstance(body, dict) else None
                return copy.deepcopy(self._delete_gracefully(current, grace))
            if rt.plural == "pods" and current["status"].get("phase") == "Running":
                self._record_event(current, "Killing", f"Stopping container {kubelet.main_container(current)}")
            deleted = self._delete_object(rt, namespace or "", name)
        if self.kuberay_operator and rt.plural == "rayclusters" and rt.group == "ray.io":
            from tests.k8s_api import kuberay

            self._reconciled_generation.pop((namespace or "", name), None)
            kuberay.collect_garbage(self, namespace or "", deleted["metadata"]["uid"])
        if rt.plural == "pods":
            return deleted
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": deleted["metadata"]["uid"]},
        }

    # --- PodDisruptionBudgets and the Eviction API -------------------------------------------------------------

    # --- streams: logs and watches ------------------------------------------------------------------------

    # --- exec (KPO's XCom sidecar) ------------------------------------------------------------------------
