"""Per-stream soft state (KV caches, overlap caches) with an owner, an explicit close and bounds.

Triton keeps a model instance alive across many streams; a stream that is aborted or forgotten by
its client must not keep memory forever. Every stateful model therefore holds its streams here,
bounded in count and in idle time.

At the count bound a new stream is **refused** (:class:`StreamCapacityError`), never made room for
by evicting another: the streams of a model are shared by every session and tenant of every
orchestrator, and evicting the least recently used one let whoever opened streams fastest (e.g.
Transcribe calls that send only their config) take a live conversation's context away. Only the
stream's own client (END), or its own idleness (``idle_seconds``), frees a stream. The refusal's
text carries :data:`CAPACITY_MARKER`, which the orchestrator maps to RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from minmo_contracts.errors import CAPACITY_MARKER

StateT = TypeVar("StateT")


class UnknownStreamError(KeyError):
    """The stream id names no live stream: never opened, already closed, or expired."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.stream_id = stream_id

    def __str__(self) -> str:
        return (
            f"unknown stream {self.stream_id!r}: it was never started, was closed, or expired after "
            "being idle; start it again with start=true"
        )


class StreamCapacityError(RuntimeError):
    """Every stream slot is held by a live stream: a new stream must wait until one ends or idles out."""

    def __init__(self, stream_id: str, max_streams: int) -> None:
        super().__init__(stream_id)
        self.stream_id = stream_id
        self.max_streams = max_streams

    def __str__(self) -> str:
        return (
            f"{CAPACITY_MARKER} the model is at capacity: all {self.max_streams} stream slots are held by live "
            f"streams, so stream {self.stream_id!r} cannot start; retry shortly or on another replica"
        )


class StreamStateStore(Generic[StateT]):
    """A thread-safe map from stream id to state, bounded by ``max_streams`` (refusing) and ``idle_seconds``."""

    def __init__(
        self,
        *,
        max_streams: int,
        idle_seconds: float,
        on_evict: Callable[[str, StateT], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        self._max_streams = max_streams
        self._idle_seconds = idle_seconds
        self._on_evict = on_evict
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[StateT, float]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, stream_id: object) -> bool:
        with self._lock:
            return stream_id in self._entries

    def put(self, stream_id: str, state: StateT) -> None:
        """Store ``state``, replacing any previous state of the stream.

        A new stream at the bound (after idle streams expired) raises :class:`StreamCapacityError` and
        changes nothing; a stream that restarts (START again) keeps its slot.
        """
        evicted: list[tuple[str, StateT]] = []
        try:
            with self._lock:
                evicted.extend(self._expire_locked())
                if stream_id not in self._entries and len(self._entries) >= self._max_streams:
                    raise StreamCapacityError(stream_id, self._max_streams)
                previous = self._entries.pop(stream_id, None)
                if previous is not None:
                    evicted.append((stream_id, previous[0]))
                self._entries[stream_id] = (state, self._clock())
        finally:
            self._notify(evicted)

    def check_room(self, stream_id: str) -> None:
        """Raise :class:`StreamCapacityError` now if ``put(stream_id, ...)`` would be refused.

        Lets a caller skip building a state (a KV cache, a fork's copy) that could not be stored;
        ``put`` checks again, atomically.
        """
        with self._lock:
            evicted = self._expire_locked()
            full = stream_id not in self._entries and len(self._entries) >= self._max_streams
        self._notify(evicted)
        if full:
            raise StreamCapacityError(stream_id, self._max_streams)

    def get(self, stream_id: str) -> StateT:
        """Return the stream's state and mark it used; raise :class:`UnknownStreamError` if absent."""
        with self._lock:
            evicted = self._expire_locked()
            entry = self._entries.get(stream_id)
            if entry is not None:
                self._entries[stream_id] = (entry[0], self._clock())
                self._entries.move_to_end(stream_id)
        self._notify(evicted)
        if entry is None:
            raise UnknownStreamError(stream_id)
        return entry[0]

    def close(self, stream_id: str) -> bool:
        """Free the stream's state; return whether it existed."""
        with self._lock:
            entry = self._entries.pop(stream_id, None)
        if entry is not None:
            self._notify([(stream_id, entry[0])])
        return entry is not None

    def expire_idle(self) -> list[str]:
        """Drop streams idle longer than the bound; return their ids."""
        with self._lock:
            evicted = self._expire_locked()
        self._notify(evicted)
        return [stream_id for stream_id, _ in evicted]

    def stream_ids(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def _expire_locked(self) -> list[tuple[str, StateT]]:
        deadline = self._clock() - self._idle_seconds
        expired = [(k, v[0]) for k, v in self._entries.items() if v[1] < deadline]
        for stream_id, _ in expired:
            del self._entries[stream_id]
        return expired

    def _notify(self, evicted: list[tuple[str, StateT]]) -> None:
        if self._on_evict is None:
            return
        for stream_id, state in evicted:
            self._on_evict(stream_id, state)
