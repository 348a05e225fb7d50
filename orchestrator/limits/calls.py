"""Time bounds on what a client must send: the first message of a streaming call.

A call that opens a stream and sends nothing holds a gRPC stream and, once admitted, a session slot;
so the first message is awaited for a bounded time *before* admission, and a client that never
sends it is ended with DEADLINE_EXCEEDED and a message saying what to send first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from orchestrator.errors import DeadlineExceeded

T = TypeVar("T")


async def first_within(messages: AsyncIterator[T], seconds: float, what: str) -> T | None:
    """The first message of ``messages``, or None when the client half-closed without one.

    ``what`` names the message the client must send (for the error); DeadlineExceeded after ``seconds``.
    """
    try:
        async with asyncio.timeout(seconds):
            return await anext(messages, None)
    except TimeoutError:
        raise DeadlineExceeded(
            f"no message within {seconds:g} s of opening the call: send {what} first, right after opening it"
        ) from None


async def prepend(first: T | None, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    """``first`` (unless None) then the rest: the stream as the handler expects it, unread."""
    if first is not None:
        yield first
    async for message in rest:
        yield message
