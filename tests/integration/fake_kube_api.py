"""``FakeKubernetesApiServer``: a FAKE Kubernetes API server, because no cluster runs here.

It is a real HTTP server on loopback that the real ``kubernetes`` client talks to, so the client's own
URL building, serialisation and patch content types are exercised; it keeps objects in memory, serves
the few endpoints the autoscaler and router use (leases, deployments and their scale subresource, pods,
endpointslices), implements resourceVersion conflicts and merge patches the way the API server does for
these simple cases, and records every request so tests can assert the exact calls.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

_PATH = re.compile(
    r"^/(?P<group>api/v1|apis/[^/]+/[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>scale))?$"
)
_LIST_KIND = {
    "pods": "PodList",
    "deployments": "DeploymentList",
    "endpointslices": "EndpointSliceList",
    "leases": "LeaseList",
}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386); also what strategic merge does for maps without list fields."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    pairs = (term.split("=", 1) for term in selector.split(","))
    return all(labels.get(key) == value for key, value in pairs)


class FakeKubernetesApiServer:
    """A fake API server (see the module docstring); ``objects[(resource, name)]`` holds plain dicts."""

    def __init__(self, namespace: str = "minmo") -> None:
        self.namespace = namespace
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self._version = 100
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

            def do_PATCH(self) -> None:
                fake._handle(self, "PATCH")

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeKubernetesApiServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration(host=self.url)
        return client.ApiClient(configuration)

    def put(self, resource: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self._version += 1
            obj.setdefault("metadata", {}).update(namespace=self.namespace, resourceVersion=str(self._version))
            self.objects[(resource, obj["metadata"]["name"])] = obj

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        query = parse_qs(url.query)
        with self._lock:
            self.requests.append(Recorded(method, url.path, query, handler.headers.get("Content-Type"), body))
        match = _PATH.match(url.path)
        if match is None or match["ns"] != self.namespace:
            return self._reply(handler, 404, self._status(404, "NotFound", f"no route {url.path}"))
        status, payload = self._route(method, match["res"], match["name"], match["sub"], body, query)
        self._reply(handler, status, payload)

    def _route(
        self, method: str, res: str, name: str | None, sub: str | None, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if name is None and method == "GET":
                selector = query.get("labelSelector", [None])[0]
                items = [
                    copy.deepcopy(obj)
                    for (kind, _), obj in sorted(self.objects.items())
                    if kind == res and _matches(obj["metadata"].get("labels", {}), selector)
                ]
                return 200, {"kind": _LIST_KIND[res], "apiVersion": "v1", "metadata": {}, "items": items}
            if name is None and method == "POST":
                key = (res, body["metadata"]["name"])
                if key in self.objects:
                    return 409, self._status(409, "AlreadyExists", f"{res} {key[1]} already exists")
                self.objects[key] = body
                self._bump(body)
                return 201, copy.deepcopy(body)
            obj = self.objects.get((res, name or ""))
            if obj is None:
                return 404, self._status(404, "NotFound", f'{res} "{name}" not found')
            if sub == "scale":
                return self._scale(method, obj, body)
            if method == "GET":
                return 200, copy.deepcopy(obj)
            if method == "PUT":
                if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                    return 409, self._status(409, "Conflict", "the object has been modified; reload and retry")
                self.objects[(res, name or "")] = body
                self._bump(body)
                return 200, copy.deepcopy(body)
            if method == "PATCH":
                _merge(obj, body)
                self._bump(obj)
                return 200, copy.deepcopy(obj)
            return 405, self._status(405, "MethodNotAllowed", method)

    def _scale(self, method: str, deployment: dict[str, Any], body: Any) -> tuple[int, dict[str, Any]]:
        if method == "PATCH":
            deployment["spec"]["replicas"] = body["spec"]["replicas"]
            self._bump(deployment)
        meta = deployment["metadata"]
        scale = {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {"replicas": deployment["spec"]["replicas"]},
        }
        return 200, scale

    def _bump(self, obj: dict[str, Any]) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": reason,
            "message": message,
            "code": code,
        }

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def deployment(name: str, replicas: int, pool: str, release: str = "demo") -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": release, "minmo-serve/pool": pool}
    selector = {"app.kubernetes.io/instance": release, "minmo-serve/pool-pod": pool}
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector}},
        },
    }


def pod(name: str, pool: str, ready: bool = True, release: str = "demo", ip: str = "10.0.0.1") -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": release, "minmo-serve/pool-pod": pool}
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels},
        "status": {"phase": "Running", "podIP": ip, "conditions": [condition]},
    }
