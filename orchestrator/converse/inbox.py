"""The client's events of one Converse call, read ahead by one task, with an idle bound and a stop.

The session's loop must be able to stop between two events for reasons of its own (the process
drains, the call reached its maximum duration, the session lost its owner lease, the client stopped
reading), and to notice a client that sends nothing for too long; a bare ``async for`` over the gRPC
request stream can do neither. So one pump task reads the stream into a small bounded queue (when it
is full the pump waits, and gRPC's flow control slows the client), and the loop takes events from
it, each wait bounded by the idle limit and cut short by ``stop``.

Every way a session ends on the server's initiative is a ``stop(reason)``: the loop sees no more
events, finishes what is in progress the way a client disconnect does, and the call then ends with
``reason`` (a domain error, so its status and message reach the client).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from orchestrator.errors import DeadlineExceeded, MinmoError

T = TypeVar("T")
_END = object()
READ_AHEAD = 32  # events read before the session handles them; past it the client is slowed


class SessionIdle(DeadlineExceeded):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"no event from the client for {seconds:g} s (and no response playing): the call ends; the session "
            "is kept, resume it with its resume token"
        )


class Inbox(Generic[T]):
    def __init__(self, events: AsyncIterator[T], *, idle_seconds: float, busy: Callable[[], bool]) -> None:
        """``busy``: True while the server is doing something for the client (a response plays), which is no idling."""
        self._events = events
        self.idle_seconds = idle_seconds
        self._busy = busy
        self._queue: asyncio.Queue[object] = asyncio.Queue(READ_AHEAD)
        self._stopping = asyncio.Event()
        self.stop_reason: MinmoError | None = None
        self._pump: asyncio.Task[None] | None = None

    def stop(self, reason: MinmoError) -> None:
        """End the reading; the first reason given is the one the call ends with."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stopping.set()

    async def events(self) -> AsyncIterator[T]:
        """The events in order, until the client half-closes or the session stops (then it just ends)."""
        self._pump = asyncio.create_task(self._read())
        try:
            while (item := await self._next()) is not _END:
                yield item  # type: ignore[misc]  # anything but _END came from the client's stream
        finally:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump

    async def _read(self) -> None:
        try:
            async for event in self._events:
                await self._queue.put(event)
        except Exception as exc:  # e.g. bytes that are no message: the loop raises it in order
            await self._queue.put(exc)
            return
        await self._queue.put(_END)

    async def _next(self) -> object:
        while not self._stopping.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(self._stopping.wait())
            try:
                done, _ = await asyncio.wait(
                    {getter, stopper}, timeout=self.idle_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in (getter, stopper):
                    if not waiter.done():
                        waiter.cancel()
            if getter in done and not getter.cancelled():
                item = getter.result()
                if isinstance(item, Exception):
                    raise item
                return item
            if not done and not self._busy():
                self.stop(SessionIdle(self.idle_seconds))
        return _END
