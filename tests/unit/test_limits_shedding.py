"""Load shedding: new sessions are refused at capacity or while the event loop lags; running ones are kept."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from orchestrator.limits.shedding import SHED_RETRY_MS, LoadShedder, LoopLag, Overloaded


async def test_capacity_refuses_only_new_sessions_with_a_retry_hint() -> None:
    shedder = LoadShedder(2)
    async with contextlib.AsyncExitStack() as running:
        await running.enter_async_context(shedder.session())
        await running.enter_async_context(shedder.session())
        for _ in range(4):  # twice the capacity more, all refused
            with pytest.raises(Overloaded) as refused:
                async with shedder.session():
                    pass
            assert refused.value.retry_after_ms == SHED_RETRY_MS
            assert "2 of 2 sessions" in refused.value.message and "retry in 1.0 s" in refused.value.message
        assert shedder.active == 2 and shedder.refused == 4
    assert shedder.active == 0
    async with shedder.session():  # the slots came back when the sessions ended
        assert shedder.active == 1
    await shedder.close()


async def test_lag_refuses_new_sessions_but_never_the_first() -> None:
    lag = LoopLag()
    shedder = LoadShedder(8, max_loop_lag_seconds=0.1, lag=lag)
    lag.seconds = 0.5  # as if the loop ran half a second late
    async with shedder.session():  # nothing runs yet: nothing to protect, so admitted
        with pytest.raises(Overloaded, match="event loop 500 ms behind"):
            shedder.check()
        lag.seconds = 0.01
        shedder.check()  # lag gone: admitted again
    await shedder.close()


def hog_the_cpu(seconds: float) -> None:
    """Block the event loop, as CPU-bound work in a handler would."""
    time.sleep(seconds)


async def test_loop_lag_sees_a_blocked_loop() -> None:
    lag = LoopLag(interval=0.02, smoothing=1.0)
    task = asyncio.create_task(lag.run())
    await asyncio.sleep(0.05)
    hog_the_cpu(0.3)
    await asyncio.sleep(0.005)  # the late timer fires now, the next one not yet
    assert lag.seconds > 0.2
    for _ in range(20):  # and it recovers once the loop runs freely
        await asyncio.sleep(0.03)
    assert lag.seconds < 0.2
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        LoadShedder(0)
