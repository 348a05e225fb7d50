"""Standard gRPC health: SERVING only while Triton's five models are ready and Redis answers.

A load balancer or ``minmo stack up`` watches the overall service ("") and ``minmo.v1.MinMo``; both
carry the same status. The readiness of the dependencies is checked periodically, not per call, and
every change is logged with the reason, so a NOT_SERVING process says why in its log.
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

SERVICES = (health.OVERALL_HEALTH, SERVICE_NAME)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

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
    """Sets the health status from the probes, every ``interval`` seconds until cancelled."""

    def __init__(self, servicer: health.aio.HealthServicer, probes: Sequence[Probe], interval: float = 2.0) -> None:
        self.servicer = servicer
        self.probes = probes
        self.interval = interval
        self.reason: str | None = "not checked yet"

    async def check(self) -> str | None:
        """Probe once and publish the result; returns the reason for NOT_SERVING, or None."""
        reasons = []
        for result in await asyncio.gather(*(probe() for probe in self.probes), return_exceptions=True):
            if isinstance(result, Exception):
                # A probe's own bug must not end the monitor (and with it the process): it reads as not ready.
                logger.error("health probe failed with %s", type(result).__name__, exc_info=result)
                reasons.append(f"a health probe failed ({type(result).__name__}: {result})")
            elif isinstance(result, BaseException):
                raise result
            elif result:
                reasons.append(result)
        reason = "; ".join(reasons) or None
        if reason != self.reason:
            if reason is None:
                logger.info("health: SERVING")
            else:
                logger.warning("health: NOT_SERVING: %s", reason)
        self.reason = reason
        for service in SERVICES:
            await self.servicer.set(service, SERVING if reason is None else NOT_SERVING)
        return reason

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)


async def not_serving_until_checked(servicer: health.aio.HealthServicer) -> None:
    """A new health servicer says SERVING for "" by default; nothing is known yet."""
    for service in SERVICES:
        await servicer.set(service, NOT_SERVING)
