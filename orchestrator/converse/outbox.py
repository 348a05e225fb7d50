"""The server events of one Converse call, waiting for the client to read them: a bounded queue.

Events are produced at the session's pace (audio paced to real time, one error per bad event, ...)
and written as fast as the client reads. A client that stops reading would let them pile up in the
server's memory without end, so the queue holds at most ``max_events``; the event that finds it full
is dropped and ``on_overflow`` is told once (the session then stops: the call is cut off with
RESOURCE_EXHAUSTED, and the session is kept for a resume). The end-of-stream mark always fits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
CLOSE = object()


class Outbox(Generic[T]):
    def __init__(self, max_events: int, on_overflow: Callable[[], None]) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        self.max_events = max_events
        self._on_overflow = on_overflow
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self.overflowed = False
        self.dropped = 0

    def put(self, event: T) -> bool:
        """Queue ``event``; False (dropped) when the client has ``max_events`` unread already."""
        if self._queue.qsize() >= self.max_events:
            self.dropped += 1
            if not self.overflowed:
                self.overflowed = True
                self._on_overflow()
            return False
        self._queue.put_nowait(event)
        return True

    def close(self) -> None:
        self._queue.put_nowait(CLOSE)

    async def get(self) -> object:
        """The next event, or ``CLOSE`` once the session is over."""
        return await self._queue.get()

    def __len__(self) -> int:
        return self._queue.qsize()
