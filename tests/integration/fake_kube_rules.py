"""What FakeKubernetesApiServer (a FAKE API server, ``fake_kube_api.py``) checks and does the way a real
API server does: the kind and OpenAPI schema of every object written (``kubernetes-validate``, strict),
``MicroTime`` in Leases, the three patch formats, the label selector grammar, and what it stores of a
Secret. Kept apart from the HTTP plumbing so each rule reads on its own.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes_validate

# The version whose OpenAPI schemas bodies are checked against: the newest kubernetes-validate ships that the
# autoscaler's client (kubernetes==37) targets.
KUBE_VERSION = "1.37.0"

ROUTE = re.compile(
    r"^/(?P<group>api/v1|apis/[^/]+/[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>scale))?$"
)
# resource -> (apiVersion, kind)
KINDS = {
    "pods": ("v1", "Pod"),
    "deployments": ("apps/v1", "Deployment"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
    "secrets": ("v1", "Secret"),
}
_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any


class ApiError(Exception):
    """Answered as a ``Status`` object with this HTTP code and reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


# ---- patches -------------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386): null removes a key, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"JSON patch path {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document: Any, parts: list[str]) -> tuple[Any, str]:
    node = document
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise ApiError(422, "Invalid", f"JSON patch path /{'/'.join(parts)}: no {part!r}") from exc
    return node, parts[-1]


def json_patch(document: Any, operations: Any) -> Any:
    """JSON patch (RFC 6902): add, remove, replace, move, copy, test; a failed ``test`` refuses the patch."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        op, parts = operation.get("op"), _pointer(operation.get("path", ""))
        if op in {"move", "copy"}:
            source, key = _parent(result, _pointer(operation.get("from", "")))
            value = copy.deepcopy(source[int(key)] if isinstance(source, list) else source[key])
            if op == "move":
                del source[int(key) if isinstance(source, list) else key]
            op, operation = "add", {**operation, "value": value}
        parent, key = _parent(result, parts)
        if op == "test":
            current = parent[int(key)] if isinstance(parent, list) else parent.get(key)
            if current != operation.get("value"):
                raise ApiError(422, "Invalid", f"JSON patch test failed at {operation['path']}")
        elif op == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if key == "-" else int(key), operation["value"])
            else:
                parent[key] = operation["value"]
        elif op == "replace":
            if not isinstance(parent, list) and key not in parent:
                raise ApiError(422, "Invalid", f"JSON patch replace at {operation['path']}: no such key")
            parent[int(key) if isinstance(parent, list) else key] = operation["value"]
        elif op == "remove":
            try:
                del parent[int(key) if isinstance(parent, list) else key]
            except (KeyError, IndexError) as exc:
                raise ApiError(422, "Invalid", f"JSON patch remove at {operation['path']}: no such key") from exc
        else:
            raise ApiError(400, "BadRequest", f"unknown JSON patch operation {op!r}")
    return result


def _holds_list_or_directive(patch: Any) -> bool:
    if isinstance(patch, list):
        return True
    if isinstance(patch, dict):
        return any(key.startswith("$") or _holds_list_or_directive(value) for key, value in patch.items())
    return False


def apply_patch(document: dict[str, Any], content_type: str | None, patch: Any) -> dict[str, Any]:
    if content_type == JSON_PATCH:
        return dict(json_patch(document, patch))
    if content_type == MERGE_PATCH:
        return dict(merge_patch(document, patch))
    if content_type == STRATEGIC_PATCH:
        if _holds_list_or_directive(patch):
            raise ApiError(
                500, "InternalError", "FakeKubernetesApiServer implements strategic merge for maps only (no lists)"
            )
        return dict(merge_patch(document, patch))
    if content_type == APPLY_PATCH:
        raise ApiError(415, "UnsupportedMediaType", "server-side apply is not implemented by FakeKubernetesApiServer")
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type}) - accepted media types include: "
        f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}, {STRATEGIC_PATCH}",
    )


# ---- label selectors -------------------------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_terms(selector: str) -> list[str]:
    """Commas separate terms except inside the parentheses of ``in``/``notin``."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term.strip() for term in terms]


def parse_selector(selector: str) -> list[Callable[[dict[str, str]], bool]]:
    """Each term as a predicate over labels; raises 400 for what the API server would not parse."""
    predicates: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        if set_based := re.fullmatch(rf"({_KEY})\s+(in|notin)\s+\(([^()]*)\)", term):
            key, operator = set_based.group(1), set_based.group(3)
            values = {value.strip() for value in set_based.group(4).split(",")}
            if not all(re.fullmatch(_VALUE, value) for value in values):
                raise ApiError(400, "BadRequest", f"unable to parse requirement: invalid label value in {term!r}")
            if operator == "in":
                predicates.append(lambda labels, k=key, v=values: labels.get(k) in v)
            else:
                predicates.append(lambda labels, k=key, v=values: labels.get(k) not in v)
        elif equality := re.fullmatch(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})", term):
            key, operator, value = equality.group(1), equality.group(3), equality.group(4)
            if operator == "!=":
                predicates.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                predicates.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif exists := re.fullmatch(rf"(!?)\s*({_KEY})", term):
            negated, key = exists.group(1) == "!", exists.group(2)
            predicates.append(lambda labels, k=key, n=negated: (k in labels) is not n)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r} in labelSelector {selector!r}")
    return predicates


# ---- object checks ---------------------------------------------------------------------------------------------


def check_object(obj: Any, resource: str) -> None:
    """What the API server checks on an object written to ``resource``: kind, schema, MicroTimes."""
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "the body must be a JSON object")
    api_version, kind = KINDS.get(resource, (None, None)) if resource != "scale" else ("autoscaling/v1", "Scale")
    # Like the API server's decoder: a body without apiVersion/kind takes them from the URL; others must agree.
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", kind)
    if (obj.get("apiVersion"), obj.get("kind")) != (api_version, kind):
        raise ApiError(
            400,
            "BadRequest",
            f"the body is {obj.get('apiVersion')}/{obj.get('kind')}, but the URL is for {api_version}/{kind}",
        )
    if kind == "Lease":
        for field in ("acquireTime", "renewTime"):
            value = (obj.get("spec") or {}).get(field)
            if value is not None and not (isinstance(value, str) and _MICRO_TIME.match(value)):
                raise ApiError(
                    400,
                    "BadRequest",
                    f'Lease in version "v1" cannot be handled as a Lease: spec.{field}: parsing time {value!r} as '
                    '"2006-01-02T15:04:05.000000Z07:00": MicroTime needs exactly six fractional digits',
                )
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        raise ApiError(422, "Invalid", f"{kind} is invalid at {where or 'the top level'}: {error.message}") from error


def stored_form(body: dict[str, Any]) -> dict[str, Any]:
    """What the API server keeps of a written object: a Secret's ``stringData`` is folded into ``data``."""
    stored = copy.deepcopy(body)
    if stored.get("kind") == "Secret" and "stringData" in stored:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in stored.pop("stringData").items()}
        stored["data"] = {**(stored.get("data") or {}), **encoded}
    return stored
