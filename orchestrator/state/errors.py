"""The session store's failures as the orchestrator's domain errors, which carry their gRPC status."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.errors import Aborted, FailedPrecondition, NotFound, ResourceExhausted, Unavailable

P = ParamSpec("P")
T = TypeVar("T")
logger = logging.getLogger(__name__)
REDIS_PRESSURE = Counter(
    "minmo_redis_failures_total",
    "Redis answers that failed a call, by kind: unreachable (or stalled past the bound), read_only (failover), "
    "out_of_memory (maxmemory reached: memory pressure)",
    ["kind"],
)
# A backstop over the client's own bound ((retries + 1) x socket timeout, 6.3 s by default): no store call
# waits longer, whatever the client does, so no session lock is held longer across a stalled Redis.
CALL_BOUND_SECONDS = 15.0
# Retry hint of an out-of-memory answer: memory comes back as sessions expire or are deleted.
OOM_RETRY_MS = 5_000


class SessionNotFound(NotFound):
    """The session (or resume token) is unknown, expired or deleted."""

    def __init__(self, what: str) -> None:
        super().__init__(f"session not found: {what} (unknown, expired or deleted); start a new session")
        self.what = what


class TurnConflict(FailedPrecondition):
    """A turn does not continue the history: it skips ahead, or another turn (a racing replica's) holds its place."""

    def __init__(self, session_id: str, sequence: int, next_sequence: int, reason: str) -> None:
        super().__init__(
            f"session {session_id}: turn {sequence} rejected ({reason}); the history continues at {next_sequence}"
        )
        self.session_id = session_id
        self.sequence = sequence
        self.next_sequence = next_sequence
        self.reason = reason


class LeaseLost(Aborted):
    """A newer connection owns the session (this one paused or lost its network longer than the lease)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session {session_id} is now served by a newer connection (this one lost its owner lease, e.g. after "
            "a pause or a network outage longer than the lease); nothing more is stored from this call: resume the "
            "session with its resume token to go on"
        )
        self.session_id = session_id


class RedisOutOfMemory(ResourceExhausted):
    """Redis refuses writes at its maxmemory: nothing was stored; reported, never a silent INTERNAL."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the session store (Redis) is out of memory ({detail}); nothing was stored: retry later, and operators: "
            "raise Redis maxmemory or lower --session-speech-mb / --tenant-speech-mb",
            OOM_RETRY_MS,
        )


def redis_failure(exc: BaseException) -> Unavailable | RedisOutOfMemory | None:
    """The domain error a Redis failure means for the client, or None for one that is a fault of ours."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | TimeoutError):
        return Unavailable(f"the session store (Redis) is unreachable or does not answer: {exc}; retry shortly")
    if isinstance(exc, ReadOnlyError):
        # A replica promoted or demoted mid-failover answers READONLY until clients follow the new primary.
        return Unavailable(f"the session store (Redis) is read-only, a failover is in progress ({exc}); retry shortly")
    if isinstance(exc, OutOfMemoryError) or (isinstance(exc, ResponseError) and "OOM" in str(exc)[:40]):
        # A script refused for memory answers "OOM ..." too, possibly wrapped in the script's error text.
        return RedisOutOfMemory(str(exc).split("\n")[0][:200])
    return None


def unavailable_on_redis_failure(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis failures as domain errors: unreachable, stalled (past ``CALL_BOUND_SECONDS``) or read-only is
    UNAVAILABLE (retryable), out of memory RESOURCE_EXHAUSTED; any other Redis error stays a fault."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            async with asyncio.timeout(CALL_BOUND_SECONDS):
                return await method(*args, **kwargs)
        except (ResponseError, RedisConnectionError, RedisTimeoutError, TimeoutError) as exc:
            error = redis_failure(exc)
            if error is None:
                raise
            if isinstance(error, RedisOutOfMemory):
                logger.warning("Redis is out of memory: %s", exc)
                REDIS_PRESSURE.labels(kind="out_of_memory").inc()
            elif isinstance(exc, ReadOnlyError):
                REDIS_PRESSURE.labels(kind="read_only").inc()
            else:
                REDIS_PRESSURE.labels(kind="unreachable").inc()
            raise error from exc

    return guarded
