"""Standard gRPC health, split in two: liveness (is this process working?) and readiness (can it serve?).

Kubernetes restarts a container whose liveness probe fails and takes a pod out of its Service while
its readiness probe fails. Mixing the two makes a dependency outage cascade: if liveness followed
Redis or Triton, a Redis restart or a Triton pod reloading would make the kubelet restart every
orchestrator at once and cut every session. So:

- ``minmo.liveness`` (``LIVENESS_SERVICE``) is SERVING for as long as the process answers: the
  health service runs on the same event loop as the API, so a wedged loop fails the probe by timeout.
  Nothing a dependency does changes it, and a drain leaves it SERVING too.
- ``""`` and ``minmo.v1.MinMo`` (``READINESS_SERVICES``, also exported as ``SERVICES``) are SERVING
  only while Triton's models are ready and Redis answers, and NOT_SERVING from the start of a drain.
  A load balancer, ``minmo stack up`` and the chart's readiness probe watch these.

The readiness of the dependencies is checked periodically, not per call, and every change is logged
with the reason, so a NOT_SERVING process says why in its log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio
from grpc_health.v1 import health, health_pb2
from tritonclient.utils import InferenceServerException

from orchestrator.server.contracts import SERVICE_NAME
from orchestrator.triton.client import TritonModels
from orchestrator.triton_stats import MODELS

logger = logging.getLogger(__name__)

LIVENESS_SERVICE = "minmo.liveness"
READINESS_SERVICES = (health.OVERALL_HEALTH, SERVICE_NAME)
SERVICES = READINESS_SERVICES  # the services whose status follows the dependencies (readiness)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DRAINING_REASON = "draining: sessions are being handed over to other replicas"

# A probe returns None when its dependency is ready, else the reason it is not.
Probe = Callable[[], Awaitable[str | None]]


def triton_probe(triton: TritonModels, models: Sequence[str] = MODELS, timeout: float = 2.0) -> Probe:
    """Ready when every model answers ready (the server being up is not enough: a model may fail to load)."""

    async def probe() -> str | None:
        for model in models:
            try:
                ready = await triton.client.is_model_ready(model, client_timeout=timeout)
            except InferenceServerException as exc:
                return f"Triton at {triton.url} does not answer: {exc.message()}"
            if not ready:
                return f"Triton model {model!r} is not ready"
        return None

    return probe


def redis_probe(client: redis.asyncio.Redis, timeout: float = 2.0) -> Probe:
    async def probe() -> str | None:
        try:
            async with asyncio.timeout(timeout):
                await client.ping()
        except (redis.RedisError, TimeoutError, OSError) as exc:
            return f"Redis does not answer: {type(exc).__name__}: {exc}"
        return None

    return probe


class ReadinessMonitor:
    """Sets the readiness services from the probes, every ``interval`` seconds until cancelled.

    It never touches ``LIVENESS_SERVICE``. After ``start_draining()`` readiness stays NOT_SERVING whatever
    the probes say, so a drain cannot be undone by the next periodic check.
    """

    def __init__(self, servicer: health.aio.HealthServicer, probes: Sequence[Probe], interval: float = 2.0) -> None:
        self.servicer = servicer
        self.probes = probes
        self.interval = interval
        self.reason: str | None = "not checked yet"
        self.draining = False

    async def check(self) -> str | None:
        """Probe once and publish the result; returns the reason for NOT_SERVING, or None."""
        reasons = [DRAINING_REASON] if self.draining else []
        for result in await asyncio.gather(*(probe() for probe in self.probes), return_exceptions=True):
            if isinstance(result, Exception):
                # A probe's own bug must not end the monitor (and with it the process): it reads as not ready.
                logger.error("health probe failed with %s", type(result).__name__, exc_info=result)
                reasons.append(f"a health probe failed ({type(result).__name__}: {result})")
            elif isinstance(result, BaseException):
                raise result
            elif result:
                reasons.append(result)
        await self._publish("; ".join(reasons) or None)
        return self.reason

    async def start_draining(self) -> None:
        """Readiness NOT_SERVING from now on (the pod leaves its Service); liveness stays SERVING.

        Call it at the start of a drain instead of ``HealthServicer.enter_graceful_shutdown()``, which
        would turn liveness NOT_SERVING too: keep that for the very end, when the server stops.
        """
        self.draining = True
        await self._publish(DRAINING_REASON)

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def _publish(self, reason: str | None) -> None:
        if reason != self.reason:
            if reason is None:
                logger.info("health: SERVING")
            else:
                logger.warning("health: NOT_SERVING: %s", reason)
        self.reason = reason
        for service in READINESS_SERVICES:
            await self.servicer.set(service, SERVING if reason is None else NOT_SERVING)


async def not_serving_until_checked(servicer: health.aio.HealthServicer) -> None:
    """Readiness NOT_SERVING until the first check (a new servicer says SERVING for "" by default);
    liveness SERVING, because whoever can ask is talking to a running process."""
    for service in READINESS_SERVICES:
        await servicer.set(service, NOT_SERVING)
    await servicer.set(LIVENESS_SERVICE, SERVING)
