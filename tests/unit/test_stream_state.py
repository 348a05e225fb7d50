"""The bounded per-stream state store: a refusing bound, idle expiry, explicit close, eviction callback."""

from __future__ import annotations

import pytest

from services.common.stream_state import CAPACITY_MARKER, StreamCapacityError, StreamStateStore, UnknownStreamError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_new_stream_over_the_bound_is_refused_and_no_live_stream_is_evicted() -> None:
    """Issue 13: evicting the least recently used stream let anyone take another session's state away."""
    evicted: list[str] = []
    store: StreamStateStore[int] = StreamStateStore(
        max_streams=2, idle_seconds=100, on_evict=lambda k, _: evicted.append(k)
    )
    store.put("a", 1)
    store.put("b", 2)
    with pytest.raises(StreamCapacityError, match="at capacity") as info:
        store.check_room("c")
    with pytest.raises(StreamCapacityError):
        store.put("c", 3)
    assert CAPACITY_MARKER in str(info.value)
    assert evicted == [] and sorted(store.stream_ids()) == ["a", "b"]
    store.put("a", 10)  # a stream restarting keeps its own slot
    assert store.get("a") == 10 and evicted == ["a"]  # its old state is released
    store.close("b")
    store.put("c", 3)  # a slot freed by its own stream's END is free for a new one


def test_an_idle_stream_frees_its_slot_for_a_new_one() -> None:
    clock = FakeClock()
    store: StreamStateStore[int] = StreamStateStore(max_streams=1, idle_seconds=5, clock=clock)
    store.put("old", 1)
    clock.now = 6
    store.put("new", 2)
    assert store.stream_ids() == ["new"]


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
