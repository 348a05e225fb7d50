"""Where each pool's pods are: a static list (local stack) or the pool Service's EndpointSlices (Kubernetes).

Pods are named, not just addressed, because the autoscaler drains and deletes pods by name: a headless
Service's DNS A records carry only IPs (a Deployment's pods get no per-pod DNS name), so in a cluster the
router reads EndpointSlices, which map each ready IP to its pod (``targetRef``). That needs one extra RBAC
grant for the orchestrator's ServiceAccount: ``discovery.k8s.io`` ``endpointslices`` ``list``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PodEndpoint:
    pod: str
    address: str  # host:port of the pod's Triton gRPC endpoint


class EndpointSource(Protocol):
    async def endpoints(self) -> Mapping[str, Sequence[PodEndpoint]]:
        """Ready pods of every pool, by pool name."""
        ...


class StaticEndpoints:
    """A fixed list, for the local stack (one Triton process = one pod of every pool)."""

    def __init__(self, pools: Mapping[str, Sequence[PodEndpoint]]) -> None:
        self._pools = {pool: tuple(pods) for pool, pods in pools.items()}

    async def endpoints(self) -> Mapping[str, Sequence[PodEndpoint]]:
        return self._pools


class EndpointSliceEndpoints:
    """Ready pods of each pool's Service from ``discovery.k8s.io/v1`` EndpointSlices, cached briefly.

    The cache bounds API-server load (one list per pool per ``refresh_seconds`` per orchestrator replica);
    a pod that became unready within that time is still offered, and Triton's error then surfaces to the
    session exactly as if the pod had failed mid-turn.
    """

    def __init__(
        self,
        discovery_api: Any,
        namespace: str,
        services: Mapping[str, str],
        port_name: str = "grpc",
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = discovery_api  # kubernetes.client.DiscoveryV1Api
        self._namespace = namespace
        self._services = dict(services)
        self._port_name = port_name
        self._refresh = refresh_seconds
        self._clock = clock
        self._cached: dict[str, tuple[PodEndpoint, ...]] | None = None
        self._fetched_at = 0.0

    async def endpoints(self) -> Mapping[str, Sequence[PodEndpoint]]:
        if self._cached is None or self._clock() - self._fetched_at >= self._refresh:
            self._cached = await asyncio.to_thread(self._list_all)
            self._fetched_at = self._clock()
        return self._cached

    def _list_all(self) -> dict[str, tuple[PodEndpoint, ...]]:
        return {pool: self._list(service) for pool, service in self._services.items()}

    def _list(self, service: str) -> tuple[PodEndpoint, ...]:
        slices = self._api.list_namespaced_endpoint_slice(
            self._namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        found: dict[str, PodEndpoint] = {}
        for item in slices.items:
            port = next((p.port for p in item.ports or [] if p.name == self._port_name), None)
            if port is None:
                continue
            for endpoint in item.endpoints or []:
                ref = endpoint.target_ref
                ready = endpoint.conditions is None or endpoint.conditions.ready is not False
                if ref is None or ref.kind != "Pod" or not ready or not endpoint.addresses:
                    continue
                host = endpoint.addresses[0]
                host = f"[{host}]" if ":" in host else host
                found[ref.name] = PodEndpoint(ref.name, f"{host}:{port}")
        return tuple(found[name] for name in sorted(found))
