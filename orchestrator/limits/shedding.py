"""Load shedding: refuse new sessions before the running ones lose real time.

Two signals: the configured capacity (``--max-sessions``), and the event loop's lag, which grows
when this process has more work than CPU. A session is audio that must keep flowing, so the
sessions already running come first: only new ones are refused, with a retry hint, while they
continue. Lag alone never refuses the first session (with nothing running there is nothing to protect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from orchestrator.errors import ResourceExhausted

logger = logging.getLogger(__name__)

# A refused session is told to come back after this long.
SHED_RETRY_MS = 1_000


class Overloaded(ResourceExhausted):
    """This process takes no new session now; retry after ``retry_after_ms`` or on another replica."""

    def __init__(self, why: str, retry_after_ms: int = SHED_RETRY_MS) -> None:
        super().__init__(
            f"this orchestrator is at capacity ({why}); retry in {retry_after_ms / 1000:.1f} s or on another replica",
            retry_after_ms,
        )


class LoopLag:
    """How late the event loop runs a timer, smoothed: the time a ready callback waits for the CPU."""

    def __init__(self, interval: float = 0.1, smoothing: float = 0.3) -> None:
        self.interval = interval
        self.smoothing = smoothing
        self.seconds = 0.0

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.perf_counter() - started - self.interval)
            self.seconds += self.smoothing * (lag - self.seconds)


class LoadShedder:
    """Admits sessions up to ``max_sessions``, and none beyond the first while the loop lags."""

    def __init__(self, max_sessions: int, *, max_loop_lag_seconds: float = 0.25, lag: LoopLag | None = None) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self.max_loop_lag_seconds = max_loop_lag_seconds
        self.lag = lag or LoopLag()
        self.active = 0
        self.refused = 0
        self._monitor: asyncio.Task[None] | None = None

    def _ensure_monitor(self) -> None:
        # Started lazily on the serving loop (the shedder is built before the loop runs in tests).
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.get_running_loop().create_task(self.lag.run())

    def check(self) -> None:
        """Raise Overloaded when a new session must be refused now."""
        self._ensure_monitor()
        if self.active >= self.max_sessions:
            self.refused += 1
            raise Overloaded(f"{self.active} of {self.max_sessions} sessions")
        if self.active and self.lag.seconds > self.max_loop_lag_seconds:
            self.refused += 1
            logger.warning("shedding a new session: event loop lag %.0f ms", self.lag.seconds * 1000)
            raise Overloaded(f"event loop {self.lag.seconds * 1000:.0f} ms behind")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        self.check()
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
