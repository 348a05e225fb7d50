"""Session-to-pod routing: each session talks to one pod of each pool for its whole life.

Triton's sequence batcher keeps a session's state (KV caches, streaming encoder state) inside one model
instance, so every turn of a session must reach the pod that holds it; the pin lives in Redis so that any
orchestrator replica (and a resumed session) finds it. Pins are also what the autoscaler counts to size
pools and to know when a draining pod is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from orchestrator.errors import Unavailable
from orchestrator.routing.endpoints import EndpointSource, PodEndpoint
from orchestrator.routing.keys import RoutingKeys
from orchestrator.routing.scripts import PIN, RELEASE

log = logging.getLogger(__name__)


class PodRouter:
    """Picks, remembers and forgets the pods of a session. Safe to share between tasks of one process."""

    def __init__(self, redis: Redis, endpoints: EndpointSource, ttl_seconds: int, prefix: str = "minmo:") -> None:
        self._redis = redis
        self._endpoints = endpoints
        self._ttl = ttl_seconds
        self._keys = RoutingKeys(prefix)
        self._pin = redis.register_script(PIN)
        self._release = redis.register_script(RELEASE)

    async def pick(self, session_id: str) -> dict[str, str]:
        """The address (host:port) of the session's pod in every pool, pinning it on first use.

        Call it when a session starts and when it resumes: an existing pin is returned (and its TTL
        refreshed) as long as the pod is still ready; a pin to a pod that is gone is moved to the least
        loaded pod (the session state is then rebuilt from Redis like after any pod failure).
        Raises ``Unavailable`` when a pool has no ready pod.
        """
        pools = await self._endpoints.endpoints()
        return {pool: await self._pick_in_pool(session_id, pool, pods) for pool, pods in pools.items()}

    async def touch(self, session_id: str) -> None:
        """Extends the pin's TTL; call it wherever the session's own TTL is refreshed."""
        await self._redis.expire(self._keys.session_pins(session_id), self._ttl)

    async def release(self, session_id: str) -> None:
        """Forgets the session's pins when it ends, so its pods count one session fewer (and can drain)."""
        await self._release(keys=[self._keys.session_pins(session_id)], args=[self._keys.prefix, session_id])

    async def _pick_in_pool(self, session_id: str, pool: str, pods: Sequence[PodEndpoint]) -> str:
        by_name: Mapping[str, PodEndpoint] = {pod.pod: pod for pod in pods}
        keys = [self._keys.session_pins(session_id), self._keys.draining(pool)]
        args: list[str | int] = [pool, self._ttl, self._keys.prefix, session_id, *sorted(by_name)]
        pod, repinned = await self._pin(keys=keys, args=args)
        if pod is None:
            raise Unavailable(f"pool {pool!r} has no ready pod; check its Deployment (kubectl get pods)")
        name = pod.decode() if isinstance(pod, bytes) else str(pod)
        if repinned:
            log.warning("session %s re-pinned in pool %s to %s: its pod is gone", session_id, pool, name)
        return by_name[name].address
