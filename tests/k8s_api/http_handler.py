"""The HTTP side of the mock API server: routing, discovery, JSON and chunked streams, websocket exec."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.k8s_api.containers import StartError
from tests.k8s_api.errors import ApiError, not_found
from tests.k8s_api.exec_stream import WebSocket, pump

if TYPE_CHECKING:
    from tests.k8s_api.server import MockKubeServer

Obj = dict[str, Any]

#: What ``/version`` answers: the Kubernetes version whose schemas and behaviour the server follows.
VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-mock",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-08-01T00:00:00Z",
    "goVersion": "go1.26.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (the Python client sends ``True``)."""
    return query.get(name, "") in ("1", "t", "T", "true", "TRUE", "True")


class ApiHandler(BaseHTTPRequestHandler):
    api: MockKubeServer
    protocol_version = "HTTP/1.1"
    server_version = "mock-kube-apiserver"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test output stays readable; MockKubeServer.requests records everything

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing ---

    def _read_body(self) -> tuple[Any, bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None, raw
        try:
            return json.loads(raw), raw
        except json.JSONDecodeError as exc:
            raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc

    def _send_json(self, code: int, body: Obj, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        for warning in self.api.request_warnings():
            self.send_header("Warning", warning)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, chunks: Iterator[bytes], content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        body: Any = None
        status = 200
        recorded = False
        self.api.begin_request()
        try:
            body, _ = self._read_body()
            websocket = self.headers.get("Upgrade", "").lower() == "websocket"
            self.api.authenticate_and_authorize(
                method, url.path, query, self.headers.get("Authorization"), websocket=websocket
            )
            fault = self.api._take_fault(method, url.path)
            if fault is not None:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                raise ApiError(fault.code, fault.reason, fault.message, headers=headers)
            status = self._route(method, url.path, query, body, content_type)
        except ApiError as err:
            # Recorded before answering, so a client that reacts to the error already finds it recorded.
            status, recorded = err.code, True
            self.api.end_request(method, url.path, query, content_type, body, status)
            self._send_json(err.code, err.status(), err.headers)
        except Exception as exc:  # a bug in the mock must surface as a 500, not a hung client
            status = 500
            self._send_json(500, ApiError(500, "InternalError", f"mock server error: {exc!r}").status())
            raise
        finally:
            if not recorded:
                self.api.end_request(method, url.path, query, content_type, body, status)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any, content_type: str | None) -> int:
        api = self.api
        if path in ("/version", "/version/"):
            self._send_json(200, VERSION)
            return 200
        if path.rstrip("/") in ("/api", "/apis") or re.fullmatch(r"/api/v1/?|/apis/[^/]+/[^/]+/?", path):
            self._send_json(200, self._discovery(path.rstrip("/")))
            return 200
        rt, namespace, name, sub = api._resolve(path)
        if method == "GET":
            if name is None:
                if flag(query, "watch"):
                    self._send_stream(api.watch_stream(rt, namespace, query), "application/json")
                else:
                    self._send_json(200, api.list_objects(rt, namespace, query))
                return 200
            if sub == "log" and rt.plural == "pods":
                payload, streaming = api.log_stream(namespace or "", name, query)
                if streaming:
                    assert not isinstance(payload, bytes)
                    self._send_stream(payload, "text/plain")
                else:
                    assert isinstance(payload, bytes)
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                return 200
            if sub == "exec" and rt.plural == "pods":
                return self._exec(namespace or "", name, path)
            if sub not in (None, "status"):
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
            self._send_json(200, api.read(rt, namespace, name))
            return 200
        if method == "POST":
            if sub == "exec" and rt.plural == "pods" and name:
                return self._exec(namespace or "", name, path)
            created = api.create(rt, namespace, body, sub, name)
            self._send_json(201, created)
            return 201
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "collection operations other than list/create are not supported")
        if method == "PUT":
            self._send_json(200, api.replace(rt, namespace, name, body, sub))
            return 200
        if method == "PATCH":
            self._send_json(200, api.patch(rt, namespace, name, body, content_type or "", sub))
            return 200
        if method == "DELETE":
            options = dict(body) if isinstance(body, dict) else {}
            if "gracePeriodSeconds" in query:  # the Python client sends DeleteOptions fields as query parameters
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            self._send_json(200, api.delete(rt, namespace, name, options or body))
            return 200
        raise ApiError(405, "MethodNotAllowed", f"method {method} not allowed")

    def _discovery(self, path: str) -> Obj:
        types = list(self.api._types.values())
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for rt in types:
                if rt.group:
                    groups.setdefault(rt.group, [])
                    if rt.version not in groups[rt.group]:
                        groups[rt.group].append(rt.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        parts = [p for p in path.split("/") if p]
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        resources = []
        for rt in types:
            if rt.group != group or rt.version != version:
                continue
            verbs = ["get", "list", "watch"] + (["create", "update", "patch", "delete"] if rt.writable else [])
            resources.append(
                {
                    "name": rt.plural,
                    "singularName": rt.kind.lower(),
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": verbs,
                }
            )
            if rt.has_status:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # --- websocket exec (v4/v5 channel protocol, just enough for KPO's XCom sidecar) ---

    def _exec(self, namespace: str, name: str, path: str) -> int:
        query = parse_qs(urlsplit(self.path).query)
        command = query.get("command", [])
        container = (query.get("container") or [""])[-1]
        wants_stdin = flag({k: v[-1] for k, v in query.items()}, "stdin")
        if self.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "BadRequest", "exec needs a websocket upgrade")
        if not container:
            raise ApiError(400, "BadRequest", "a container name must be specified")
        offered = [p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        protocol = next(
            (p for p in ("v4.channel.k8s.io", "v5.channel.k8s.io") if p in offered), offered[0] if offered else ""
        )
        # Check the pod (and start the command) before upgrading, so errors come back as a Status.
        pod = self.api.get("pods", name, namespace)
        if pod is None:
            raise not_found(self.api._types[("", "v1", "pods")], name)
        process = None
        if self.api._runs(pod):
            assert self.api.process_kubelet is not None
            try:
                process = self.api.process_kubelet.open_exec(pod["metadata"]["uid"], container, command, wants_stdin)
            except StartError as exc:
                raise ApiError(400, "BadRequest", f"unable to upgrade connection: {exc}") from exc
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        if protocol:
            self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.close_connection = True
        ws = WebSocket(self.rfile, self.wfile, self.connection)
        if process is not None:
            ws.finish(pump(ws, process))
            return 101
        stdin_text = ws.read_stdin_line() if wants_stdin else None
        try:
            out, err, code = self.api.exec_command(namespace, name, container, command, stdin_text)
        except ApiError as exc:
            out, err, code = "", exc.message, 1
        if out:
            ws.channel(1, out.encode())
        if err:
            ws.channel(2, err.encode())
        ws.finish(code)
        return 101
