"""Builds session routing from ``--triton-pool`` / ``--namespace`` (None without pools: one ``--triton``, as before).

Static targets need nothing but Redis; ``k8s:`` targets read EndpointSlices with the pod's in-cluster
ServiceAccount (the chart's Role grants ``discovery.k8s.io`` ``endpointslices`` ``list``, nothing else).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis.asyncio

from orchestrator.routing.endpoints import EndpointSliceEndpoints, EndpointSource, PodEndpoint, StaticEndpoints
from orchestrator.routing.pools import PoolSpec, PoolSpecError, check_pools
from orchestrator.routing.router import PodRouter
from orchestrator.routing.sessions import SessionRouting
from orchestrator.server.contracts import ServeSettings
from orchestrator.triton.client import TritonModels
from orchestrator.triton.routed import TritonClients

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# A Transcribe or Synthesize call is bounded (300 s of audio, a bounded text): a pin its crashed
# orchestrator leaves behind stops counting against its pod after this long.
TASK_PIN_TTL_SECONDS = 900


class RoutingConfigError(ValueError):
    """The routing flags cannot work as given; the message says what to fix."""


def _namespace(settings: ServeSettings) -> str:
    if settings.namespace:
        return settings.namespace
    try:
        return NAMESPACE_FILE.read_text().strip()
    except OSError as exc:
        raise RoutingConfigError(
            f"a k8s: pool target needs the namespace: pass --namespace (cannot read {NAMESPACE_FILE}: {exc.strerror})"
        ) from exc


def _endpoint_source(settings: ServeSettings, pools: tuple[PoolSpec, ...]) -> EndpointSource:
    services = {pool.name: pool.service for pool in pools if pool.service is not None}
    if services and len(services) != len(pools):
        raise RoutingConfigError("--triton-pool: use k8s:SERVICE targets for every pool or for none")
    if not services:
        static = {pool.name: [PodEndpoint(address, address) for address in pool.addresses] for pool in pools}
        return StaticEndpoints(static)
    namespace = _namespace(settings)
    from kubernetes import client, config  # only a cluster deployment pays for the import

    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise RoutingConfigError(f"k8s: pool targets need to run in a Kubernetes pod ({exc})") from exc
    return EndpointSliceEndpoints(client.DiscoveryV1Api(), namespace, services)


def build_routing(
    settings: ServeSettings,
    redis_client: redis.asyncio.Redis,
    client_factory: Callable[[str], TritonModels],
    *,
    session_ttl_seconds: int,
    prefix: str = "minmo:",
) -> SessionRouting | None:
    """Session routing for ``settings.triton_pools``; None when there are none (the single ``--triton`` path)."""
    pools = settings.triton_pools
    if not pools:
        return None
    try:
        pool_of_model = check_pools(pools)
    except PoolSpecError as exc:
        raise RoutingConfigError(str(exc)) from exc
    endpoints = _endpoint_source(settings, pools)
    router = PodRouter(redis_client, endpoints, ttl_seconds=session_ttl_seconds, prefix=prefix)
    task_router = PodRouter(redis_client, endpoints, ttl_seconds=TASK_PIN_TTL_SECONDS, prefix=prefix)
    return SessionRouting(router, task_router, endpoints, pool_of_model, TritonClients(client_factory))
