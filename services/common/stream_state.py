"""Per-stream soft state (KV caches, overlap caches) with an owner, an explicit close and bounds.

Triton keeps a model instance alive across many streams; a stream that is aborted or forgotten by
its client must not keep memory forever. Every stateful model therefore holds its streams here:
bounded in count (least recently used evicted first) and in idle time. The state can always be
rebuilt from what Redis holds, so evicting it is safe, merely slower for the next request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

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


class StreamStateStore(Generic[StateT]):
    """A thread-safe map from stream id to state, bounded by ``max_streams`` and ``idle_seconds``."""

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
        """Store ``state``, replacing any previous state of the stream and evicting if over bound."""
        evicted: list[tuple[str, StateT]] = []
        with self._lock:
            previous = self._entries.pop(stream_id, None)
            if previous is not None:
                evicted.append((stream_id, previous[0]))
            self._entries[stream_id] = (state, self._clock())
            evicted.extend(self._expire_locked())
            while len(self._entries) > self._max_streams:
                old_id, (old_state, _) = self._entries.popitem(last=False)
                evicted.append((old_id, old_state))
        self._notify(evicted)

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
