"""The bounded per-stream state store: LRU bound, idle expiry, explicit close, eviction callback."""

from __future__ import annotations

import pytest

from services.common.stream_state import StreamStateStore, UnknownStreamError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_stream_is_evicted_over_the_bound() -> None:
    evicted: list[str] = []
    store: StreamStateStore[int] = StreamStateStore(
        max_streams=2, idle_seconds=100, on_evict=lambda k, _: evicted.append(k)
    )
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # a is now the most recent
    store.put("c", 3)
    assert evicted == ["b"]
    assert sorted(store.stream_ids()) == ["a", "c"]


def test_idle_streams_expire_and_then_are_unknown() -> None:
    clock = FakeClock()
    store: StreamStateStore[str] = StreamStateStore(max_streams=10, idle_seconds=5, clock=clock)
    store.put("s", "state")
    clock.now = 4
    assert store.get("s") == "state"  # touching refreshes the idle timer
    clock.now = 8
    assert store.expire_idle() == []
    clock.now = 10
    assert store.expire_idle() == ["s"]
    with pytest.raises(UnknownStreamError, match="start it again with start=true"):
        store.get("s")


def test_close_frees_state_once() -> None:
    freed: list[str] = []
    store: StreamStateStore[int] = StreamStateStore(
        max_streams=4, idle_seconds=9, on_evict=lambda k, _: freed.append(k)
    )
    store.put("x", 1)
    assert store.close("x") is True
    assert store.close("x") is False
    assert freed == ["x"] and len(store) == 0


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="max_streams"):
        StreamStateStore(max_streams=0, idle_seconds=1)
    with pytest.raises(ValueError, match="idle_seconds"):
        StreamStateStore(max_streams=1, idle_seconds=0)
