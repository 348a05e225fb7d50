"""The autoscaler's reads and writes on the Kubernetes API, nothing else (the chart's RBAC grants exactly
these: deployments get/list, deployments/scale get/patch, pods list/patch; leases live in lease.py).

A pool is a Deployment. It is named in the config or found by labels within the Helm release:
``app.kubernetes.io/instance=<release>`` and ``minmo-serve/pool=<pool>``; its pods are found by the
Deployment's own selector, so pod labels need no convention of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.autoscaler.model import DELETION_COST_ANNOTATION

POOL_LABEL = "minmo-serve/pool"
RELEASE_LABEL = "app.kubernetes.io/instance"


class ClusterError(RuntimeError):
    """The cluster does not look like the config says (no or several Deployments for a pool)."""


@dataclass(frozen=True)
class PodState:
    name: str
    ready: bool
    deletion_cost: int | None


class KubernetesPools:
    def __init__(self, apps_api: Any, core_api: Any, namespace: str, release: str) -> None:
        self._apps = apps_api  # kubernetes.client.AppsV1Api
        self._core = core_api  # kubernetes.client.CoreV1Api
        self.namespace = namespace
        self._release = release

    def deployment_for(self, pool: str, named: str | None) -> str:
        if named:
            return named
        selector = f"{RELEASE_LABEL}={self._release},{POOL_LABEL}={pool}"
        found = self._apps.list_namespaced_deployment(self.namespace, label_selector=selector).items
        if len(found) != 1:
            names = ", ".join(item.metadata.name for item in found) or "none"
            raise ClusterError(
                f"pool {pool!r}: expected one Deployment labelled {selector} in {self.namespace}, found {names}; "
                "set `deployment:` for the pool in the autoscaler config or fix --release"
            )
        return str(found[0].metadata.name)

    def replicas(self, deployment: str) -> int:
        scale = self._apps.read_namespaced_deployment_scale(deployment, self.namespace)
        return int(scale.spec.replicas or 0)

    def set_replicas(self, deployment: str, replicas: int) -> None:
        self._apps.patch_namespaced_deployment_scale(deployment, self.namespace, {"spec": {"replicas": replicas}})

    def pods(self, deployment: str) -> list[PodState]:
        """The Deployment's pods, less those already being deleted (they hold no future of the pool)."""
        selector_labels = self._apps.read_namespaced_deployment(deployment, self.namespace).spec.selector.match_labels
        selector = ",".join(f"{key}={value}" for key, value in sorted((selector_labels or {}).items()))
        pods = self._core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [_pod_state(pod) for pod in pods if pod.metadata.deletion_timestamp is None]

    def set_deletion_cost(self, pod: str, cost: int | None) -> None:
        value = None if cost is None else str(cost)  # None deletes the annotation
        self._core.patch_namespaced_pod(
            pod, self.namespace, {"metadata": {"annotations": {DELETION_COST_ANNOTATION: value}}}
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
