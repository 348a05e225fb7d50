"""The autoscaler's reads and writes on the Kubernetes API, nothing else (the chart's RBAC grants exactly
these: deployments get/list, deployments/scale get/patch, pods list/patch; leases live in lease.py).

A pool is a Deployment. It is named in the config or found by labels within the Helm release:
``app.kubernetes.io/instance=<release>`` and ``minmo-serve/pool=<pool>``; its pods are found by the
Deployment's own selector (``matchLabels`` and ``matchExpressions``), so pod labels need no convention of ours.

Every request carries a timeout (a hung API server fails the round instead of stopping it) and a field
manager, so ``kubectl get -o yaml --show-managed-fields`` says who set what. Patches are JSON merge
patches (RFC 7386), whose meaning does not depend on the kind's strategic-merge keys. The scale write
carries the resourceVersion the replicas were read at, so a change made in between (``kubectl scale``,
another controller) is refused with 409 Conflict instead of overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from orchestrator.autoscaler.model import DELETION_COST_ANNOTATION

POOL_LABEL = "minmo-serve/pool"
RELEASE_LABEL = "app.kubernetes.io/instance"
FIELD_MANAGER = "minmo-autoscaler"
MERGE_PATCH = "application/merge-patch+json"


class ClusterError(RuntimeError):
    """The cluster does not look like the config says (no or several Deployments for a pool)."""


class ScaleConflict(RuntimeError):
    """The Deployment changed since its replicas were read (HTTP 409): the write was refused."""


@dataclass(frozen=True)
class PodState:
    name: str
    ready: bool
    deletion_cost: int | None


@dataclass(frozen=True)
class ScaleState:
    replicas: int
    resource_version: str  # of the Deployment; the scale write is refused if it changed


def bounded_api_client(configuration: Any | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` that never retries: urllib3 retries an idempotent request three
    times by default, which would turn one timed-out GET into four; the next round is the retry."""
    from kubernetes import client

    configuration = configuration or client.Configuration.get_default_copy()
    configuration.retries = False
    return client.ApiClient(configuration)


def label_selector(match_labels: Mapping[str, str] | None, match_expressions: Sequence[Any] | None) -> str:
    """A ``LabelSelector`` in the query syntax the API server parses (equality- and set-based terms)."""
    terms = [f"{key}={value}" for key, value in sorted((match_labels or {}).items())]
    for expression in match_expressions or []:
        key, operator, values = expression.key, expression.operator, sorted(expression.values or [])
        if operator == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            raise ClusterError(f"unknown label selector operator {operator!r} on key {key!r}")
    return ",".join(terms)


class KubernetesPools:
    def __init__(
        self, apps_api: Any, core_api: Any, namespace: str, release: str, timeout_seconds: float = 10.0
    ) -> None:
        self._apps = apps_api  # kubernetes.client.AppsV1Api
        self._core = core_api  # kubernetes.client.CoreV1Api
        self.namespace = namespace
        self._release = release
        self._timeout = timeout_seconds

    def deployment_for(self, pool: str, named: str | None) -> str:
        if named:
            return named
        selector = f"{RELEASE_LABEL}={self._release},{POOL_LABEL}={pool}"
        found = self._apps.list_namespaced_deployment(
            self.namespace, label_selector=selector, _request_timeout=self._timeout
        ).items
        if len(found) != 1:
            names = ", ".join(item.metadata.name for item in found) or "none"
            raise ClusterError(
                f"pool {pool!r}: expected one Deployment labelled {selector} in {self.namespace}, found {names}; "
                "set `deployment:` for the pool in the autoscaler config or fix --release"
            )
        return str(found[0].metadata.name)

    def scale(self, deployment: str) -> ScaleState:
        scale = self._apps.read_namespaced_deployment_scale(deployment, self.namespace, _request_timeout=self._timeout)
        return ScaleState(int(scale.spec.replicas or 0), str(scale.metadata.resource_version))

    def set_replicas(self, deployment: str, replicas: int, resource_version: str) -> None:
        """Raises ``ScaleConflict`` when the Deployment is no longer at ``resource_version``."""
        body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        try:
            self._apps.patch_namespaced_deployment_scale(
                deployment,
                self.namespace,
                body,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ScaleConflict(f"{deployment} changed since resourceVersion {resource_version}") from exc
            raise

    def pods(self, deployment: str) -> list[PodState]:
        """The Deployment's pods, less those already being deleted (they hold no future of the pool)."""
        spec = self._apps.read_namespaced_deployment(deployment, self.namespace, _request_timeout=self._timeout).spec
        selector = label_selector(spec.selector.match_labels, spec.selector.match_expressions)
        if not selector:
            raise ClusterError(f"Deployment {deployment} has an empty selector; it would select every pod")
        pods = self._core.list_namespaced_pod(
            self.namespace, label_selector=selector, _request_timeout=self._timeout
        ).items
        return [_pod_state(pod) for pod in pods if pod.metadata.deletion_timestamp is None]

    def set_deletion_cost(self, pod: str, cost: int | None) -> None:
        value = None if cost is None else str(cost)  # null removes the annotation (merge patch)
        self._core.patch_namespaced_pod(
            pod,
            self.namespace,
            {"metadata": {"annotations": {DELETION_COST_ANNOTATION: value}}},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
            _request_timeout=self._timeout,
        )


def _pod_state(pod: Any) -> PodState:
    conditions = (pod.status.conditions if pod.status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    raw = (pod.metadata.annotations or {}).get(DELETION_COST_ANNOTATION)
    try:
        cost = None if raw is None else int(raw)
    except ValueError:
        cost = None  # someone else's malformed value; the API server rejects those anyway
    return PodState(pod.metadata.name, ready, cost)
