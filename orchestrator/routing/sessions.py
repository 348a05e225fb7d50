"""Routing as the handlers see it: the models of a session (or of one task call) on their pinned pods.

Pin lifecycle, decided once here:

- A Converse session picks on start and on every resume (an existing pin is kept while its pod is
  ready), refreshes the pin wherever its lease is kept alive, and releases it when the client ends the
  session with ``EndSession`` or deletes it with ``DeleteSession``. A disconnect or a crash releases
  nothing: the client may resume, and must then find the pod that holds its Triton-side state; the pin
  expires with the session's TTL otherwise (the autoscaler stops counting it then).
- A Transcribe or Synthesize call holds Triton sequences only for the call, so it is pinned under its
  own id (``task-<uuid>``) to the least-loaded ready pod of each pool and released when the call ends,
  on every exit. That counts task load where the autoscaler looks, keeps a draining pod out of new
  calls, and works when pools split the models (no single address serves all five). A task pin that a
  crash leaves behind expires after ``task_ttl_seconds``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping

from redis.exceptions import RedisError
from tritonclient.utils import InferenceServerException

from orchestrator.routing.endpoints import EndpointSource
from orchestrator.routing.router import PodRouter
from orchestrator.state.errors import unavailable_on_redis_failure
from orchestrator.triton.routed import RoutedModels, TritonClients

PROBE_TIMEOUT_SECONDS = 2.0  # per readiness call to one pod, like the single-Triton probe


class SessionRouting:
    def __init__(
        self,
        router: PodRouter,
        task_router: PodRouter,
        endpoints: EndpointSource,
        pool_of_model: Mapping[str, str],
        clients: TritonClients,
    ) -> None:
        self.router = router
        self.task_router = task_router  # same pods and keys, a TTL bounded by a task's length
        self.endpoints = endpoints
        self.pool_of_model = dict(pool_of_model)
        self.clients = clients

    def _models(self, pods: Mapping[str, str]) -> RoutedModels:
        return RoutedModels(self.clients, {model: pods[pool] for model, pool in self.pool_of_model.items()})

    @unavailable_on_redis_failure
    async def session_models(self, session_id: str) -> RoutedModels:
        """Pick (or find) the session's pod in every pool; raises ``Unavailable`` when a pool has none ready."""
        return self._models(await self.router.pick(session_id))

    @unavailable_on_redis_failure
    async def touch(self, session_id: str) -> None:
        await self.router.touch(session_id)

    @unavailable_on_redis_failure
    async def release(self, session_id: str) -> None:
        await self.router.release(session_id)

    @contextlib.asynccontextmanager
    async def task_models(self) -> AsyncIterator[RoutedModels]:
        """The least-loaded pods for one task call, pinned for the call and released on every exit."""
        call_id = f"task-{uuid.uuid4().hex}"
        pods = await unavailable_on_redis_failure(self.task_router.pick)(call_id)
        try:
            yield self._models(pods)
        finally:
            # A Redis outage here costs a stale pin (it expires), not the finished call's answer.
            with contextlib.suppress(RedisError):
                await self.task_router.release(call_id)

    async def readiness(self) -> str | None:
        """None when every pool has a pod whose models are all ready, else why not (for the health probe).

        A pool is ready with one good pod: the router picks among the listed pods, and a session pinned to
        a bad one recovers like after any Triton failure.
        """
        pools = await self.endpoints.endpoints()
        problems = []
        for pool in sorted(set(self.pool_of_model.values())):
            models = [model for model, owner in self.pool_of_model.items() if owner == pool]
            pods = pools.get(pool, ())
            if not pods:
                problems.append(f"Triton pool {pool!r} has no ready pod")
                continue
            reasons = [await self._pod_problem(pod.address, models) for pod in pods]
            if all(reasons):
                problems.append(f"no pod of Triton pool {pool!r} is ready ({'; '.join(r for r in reasons if r)})")
        return "; ".join(problems) or None

    async def _pod_problem(self, address: str, models: list[str]) -> str | None:
        client = self.clients.client(address)
        for model in models:
            try:
                if not await client.client.is_model_ready(model, client_timeout=PROBE_TIMEOUT_SECONDS):
                    return f"{address}: model {model!r} is not ready"
            except InferenceServerException as exc:
                return f"{address} does not answer: {exc.message()}"
        return None

    async def close(self) -> None:
        await self.clients.close()
