"""``FakeKubernetesApiServer``: a FAKE Kubernetes API server, because no cluster runs here.

It is a real HTTP server on loopback that the real ``kubernetes`` client talks to, so the client's own
URL building, serialisation and patch content types are exercised. It keeps objects in memory and serves
the few endpoints the autoscaler, the router and the chart's hook Job use (leases, deployments and their
scale subresource, pods, endpointslices, secrets). Being a fake, it checks at least what a real API server
checks on those calls, so a request it accepts is one a cluster would accept:

- every object written (POST, PUT, the result of a PATCH, and the fixtures a test ``put``s) is validated
  against the OpenAPI schema of ``KUBE_VERSION`` with ``kubernetes-validate`` in strict mode (an unknown
  field is refused, as with ``fieldValidation=Strict``), and its kind must be the one the URL names;
- Lease times (``acquireTime``, ``renewTime``) are ``MicroTime``: RFC 3339 with exactly six fractional
  digits, as Go's ``2006-01-02T15:04:05.000000Z07:00`` layout parses them (400 otherwise);
- PATCH honours its Content-Type: JSON patch (RFC 6902, with ``test``), JSON merge patch (RFC 7386),
  strategic merge patch (as a merge patch for maps; one that holds a list or a ``$patch`` directive is
  refused with 500 because this fake does not implement list strategies), server-side apply refused with
  415 (not implemented here); any other type gets 415 like the real server;
- a ``metadata.resourceVersion`` in a PUT or in a patched object is a precondition: 409 Conflict if the
  object moved on;
- ``labelSelector`` is parsed with the full grammar (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``,
  ``!key``); a malformed one gets 400.

It records every request (``requests``), can run a hook before handling one (``before``), and can hang
chosen requests (``hang``) until released, to stand in for an API server that accepts and never answers.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

from tests.integration.fake_kube_rules import (
    KINDS,
    ROUTE,
    ApiError,
    Recorded,
    apply_patch,
    check_object,
    parse_selector,
    stored_form,
)


class FakeKubernetesApiServer:
    """A fake API server (see the module docstring); ``objects[(resource, name)]`` holds plain dicts."""

    def __init__(self, namespace: str = "minmo") -> None:
        self.namespace = namespace
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.before: Callable[[Recorded], None] | None = None  # runs before a request is handled
        self._hang: Callable[[Recorded], bool] = lambda _: False
        self._released = threading.Event()
        self._version = 100
        self._lock = threading.RLock()
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
            self._released.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def configuration(self) -> client.Configuration:
        return client.Configuration(host=self.url)

    def api_client(self) -> client.ApiClient:
        return client.ApiClient(self.configuration())

    def hang(self, matching: Callable[[Recorded], bool]) -> None:
        """Requests ``matching`` get no answer until ``release()`` or shutdown (the connection stays open)."""
        self._released.clear()
        self._hang = matching

    def release(self) -> None:
        self._hang = lambda _: False
        self._released.set()

    def put(self, resource: str, obj: dict[str, Any]) -> None:
        """A fixture, checked like a write: a test cannot stage an object a cluster would not hold."""
        with self._lock:
            self._version += 1
            obj.setdefault("metadata", {}).update(namespace=self.namespace, resourceVersion=str(self._version))
            check_object(obj, resource)
            self.objects[(resource, obj["metadata"]["name"])] = obj

    def update(self, resource: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Someone else's write (``kubectl scale``, a controller's status update): the object moves on a version."""
        with self._lock:
            obj = self.objects[(resource, name)]
            change(obj)
            check_object(obj, resource)
            self._bump(obj)

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip() or None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._reply(handler, 400, self._status(400, "BadRequest", "the body is not JSON"))
        request = Recorded(method, url.path, parse_qs(url.query), content_type, body)
        with self._lock:
            self.requests.append(request)
        if self.before is not None:
            self.before(request)
        if self._hang(request):
            self._released.wait()
            return  # the client gave up long ago; answer nothing
        match = ROUTE.match(url.path)
        if match is None or match["ns"] != self.namespace or match["res"] not in KINDS:
            return self._reply(handler, 404, self._status(404, "NotFound", f"no route {url.path}"))
        try:
            status, payload = self._route(request, match["res"], match["name"], match["sub"])
        except ApiError as error:
            status, payload = error.code, self._status(error.code, error.reason, error.message)
        self._reply(handler, status, payload)

    def _route(self, request: Recorded, res: str, name: str | None, sub: str | None) -> tuple[int, dict[str, Any]]:
        method, body = request.method, request.body
        manager = request.query.get("fieldManager", [""])[0]
        if len(manager) > 128:
            raise ApiError(422, "Invalid", "fieldManager must be at most 128 characters")
        # Like the API server: no Content-Type means its first serializer, JSON; anything else but JSON is refused.
        if method in {"POST", "PUT"} and request.content_type not in {None, "application/json"}:
            raise ApiError(415, "UnsupportedMediaType", f"{method} needs application/json, got {request.content_type}")
        with self._lock:
            if name is None and method == "GET":
                selector = request.query.get("labelSelector", [""])[0]
                predicates = parse_selector(selector) if selector else []  # parsed first, as the server does
                items = [
                    copy.deepcopy(obj)
                    for (kind, _), obj in sorted(self.objects.items())
                    if kind == res and all(match(obj["metadata"].get("labels", {})) for match in predicates)
                ]
                api_version, kind = KINDS[res]
                return 200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {}, "items": items}
            if name is None and method == "POST":
                check_object(body, res)
                key = (res, body["metadata"]["name"])
                if key in self.objects:
                    raise ApiError(409, "AlreadyExists", f'{res} "{key[1]}" already exists')
                stored = stored_form(body)
                stored["metadata"]["namespace"] = self.namespace
                self.objects[key] = stored
                self._bump(stored)
                return 201, copy.deepcopy(stored)
            obj = self.objects.get((res, name or ""))
            if obj is None:
                raise ApiError(404, "NotFound", f'{res} "{name}" not found')
            if sub == "scale":
                return self._scale(request, obj)
            if method == "GET":
                return 200, copy.deepcopy(obj)
            if method == "PUT":
                check_object(body, res)
                self._precondition(body, obj)
                stored = stored_form(body)
                self.objects[(res, name or "")] = stored
                self._bump(stored)
                return 200, copy.deepcopy(stored)
            if method == "PATCH":
                patched = apply_patch(obj, request.content_type, body)
                if patched.get("metadata", {}).get("name") != name:
                    raise ApiError(422, "Invalid", "metadata.name is immutable")
                check_object(patched, res)
                self._precondition(patched, obj)
                self.objects[(res, name or "")] = patched
                self._bump(patched)
                return 200, copy.deepcopy(patched)
            raise ApiError(405, "MethodNotAllowed", method)

    def _scale(self, request: Recorded, deployment: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        meta = deployment["metadata"]
        scale = {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": {"replicas": deployment["spec"].get("replicas", 1)},
            "status": {"replicas": deployment["spec"].get("replicas", 1)},
        }
        if request.method == "GET":
            return 200, scale
        if request.method != "PATCH":
            raise ApiError(405, "MethodNotAllowed", f"{request.method} on the scale subresource")
        patched = apply_patch(scale, request.content_type, request.body)
        check_object(patched, "scale")
        self._precondition(patched, deployment)
        deployment["spec"]["replicas"] = patched["spec"]["replicas"]
        self._bump(deployment)
        scale["spec"] = dict(patched["spec"])
        scale["metadata"]["resourceVersion"] = deployment["metadata"]["resourceVersion"]
        return 200, scale

    @staticmethod
    def _precondition(written: dict[str, Any], current: dict[str, Any]) -> None:
        wanted = written.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {current['metadata']['name']}: the object has been modified; "
                "please apply your changes to the latest version and try again",
            )

    def _bump(self, obj: dict[str, Any]) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
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


def deployment(
    name: str, replicas: int, pool: str, release: str = "demo", expressions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": release, "minmo-serve/pool": pool}
    selector = {"app.kubernetes.io/instance": release, "minmo-serve/pool-pod": pool}
    pod_selector: dict[str, Any] = {"matchLabels": selector}
    if expressions:
        pod_selector["matchExpressions"] = expressions
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": pod_selector,
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{"name": "tritonserver", "image": "triton:test"}]},
            },
        },
    }


def pod(
    name: str,
    pool: str,
    ready: bool = True,
    release: str = "demo",
    ip: str = "10.0.0.1",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/instance": release, "minmo-serve/pool-pod": pool, **(labels or {})},
        },
        "spec": {"containers": [{"name": "tritonserver", "image": "triton:test"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [condition]},
    }
