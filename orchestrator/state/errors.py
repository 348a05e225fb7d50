"""The session store's failures as the orchestrator's domain errors, which carry their gRPC status."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.errors import FailedPrecondition, NotFound, Unavailable

P = ParamSpec("P")
T = TypeVar("T")


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


def unavailable_on_redis_failure(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """An unreachable or timed-out Redis becomes Unavailable (retryable); other Redis errors stay faults."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise Unavailable(f"the session store (Redis) is unreachable: {exc}; retry shortly") from exc

    return guarded
