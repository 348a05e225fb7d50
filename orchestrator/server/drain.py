"""The orchestrator's SIGTERM drain: leave without losing anything a client was told is stored.

Order, each step for a reason:

1. Readiness goes NOT_SERVING (``ReadinessMonitor.start_draining`` of ``orchestrator.server.health``;
   liveness stays SERVING, so the kubelet does not restart a pod that is draining), and load balancers
   and the Kubernetes readiness probe stop sending new calls here.
2. Every live Converse session is stopped with UNAVAILABLE (``ConverseService.drain``): the response in
   flight is cut to what was played, stored and reported (``response_done`` INTERRUPTED); a user turn
   not yet acknowledged is not stored; then the call ends with UNAVAILABLE and a message to resume with
   the resume token. UNAVAILABLE because it is the status gRPC clients and retry policies already
   treat as "try again, elsewhere": nothing is wrong with the request or the session.
3. ``server.stop`` refuses new calls at once and gives the calls in flight (the stopping sessions,
   Transcribe and Synthesize) what is left of the drain time, less a reserve for closing the clients;
   whatever is still running then is cancelled, so the process exits within ``--drain-seconds``.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import grpc.aio
from grpc_health.v1 import health

logger = logging.getLogger(__name__)
# Kept back from the drain time for what follows the server's stop (closing Triton, Redis, metrics).
CLOSE_RESERVE_SECONDS = 1.5


class Drainable(Protocol):
    def drain(self) -> int:
        """Stop every live session; return how many there were."""
        ...


class Readiness(Protocol):
    async def start_draining(self) -> None:
        """Readiness NOT_SERVING from now on, whatever the dependencies say."""
        ...


async def drain(
    server: grpc.aio.Server,
    readiness: Readiness,
    health_servicer: health.aio.HealthServicer,
    sessions: Drainable,
    drain_seconds: float,
) -> None:
    started = time.monotonic()
    await readiness.start_draining()
    live = sessions.drain()
    grace = max(0.0, drain_seconds - CLOSE_RESERVE_SECONDS)
    logger.info(
        "stopping: refusing new calls, readiness NOT_SERVING, %d session(s) told to resume elsewhere, "
        "%.1f s for calls in flight",
        live,
        grace,
    )
    await server.stop(grace)
    await health_servicer.enter_graceful_shutdown()  # the very end: liveness goes too
    logger.info("drained in %.1f s", time.monotonic() - started)
