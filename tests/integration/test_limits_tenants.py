"""Per-tenant limits in the real Redis: concurrent sessions and audio seconds per minute, shared by replicas.

Two ``TenantLimits`` over two Redis clients stand for two orchestrator replicas: what one counts, the
other sees, and concurrent admissions never overshoot (each check-and-count is one Lua script).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from orchestrator.limits.tenants import (
    SESSION_RETRY_MS,
    WINDOW_MS,
    TenantLimitExceeded,
    TenantLimits,
    TenantLimitSettings,
)
from tests.integration.helpers import delete_matching

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[redis.asyncio.Redis, redis.asyncio.Redis, str]]:
    first = redis.asyncio.Redis(host="127.0.0.1", port=6379)
    second = redis.asyncio.Redis(host="127.0.0.1", port=6379)
    prefix = f"test-limits-{uuid.uuid4().hex[:8]}:"
    yield first, second, prefix
    await delete_matching(first, f"{prefix}*")
    await first.aclose()
    await second.aclose()


async def test_concurrent_sessions_are_limited_per_tenant_across_replicas(replicas) -> None:
    first, second, prefix = replicas
    settings = TenantLimitSettings(max_sessions=2)
    a, b = TenantLimits(first, settings, prefix=prefix), TenantLimits(second, settings, prefix=prefix)
    await a.acquire_session("acme", "s1")
    await b.acquire_session("acme", "s2")
    with pytest.raises(TenantLimitExceeded) as refused:
        await a.acquire_session("acme", "s3")
    assert refused.value.retry_after_ms == SESSION_RETRY_MS
    assert refused.value.message == "tenant 'acme' is over its limit of 2 concurrent sessions; retry in 2.0 s"
    await a.acquire_session("acme", "s1")  # refreshing a held slot is not a new session
    await b.acquire_session("globex", "g1")  # another tenant has its own slots
    await b.release_session("acme", "s2")
    await a.acquire_session("acme", "s3")


async def test_concurrent_admissions_never_overshoot(replicas) -> None:
    first, second, prefix = replicas
    settings = TenantLimitSettings(max_sessions=5)
    limits = [TenantLimits(client, settings, prefix=prefix) for client in (first, second)]

    async def try_open(index: int) -> bool:
        try:
            await limits[index % 2].acquire_session("acme", f"s{index}")
        except TenantLimitExceeded:
            return False
        return True

    admitted = await asyncio.gather(*(try_open(index) for index in range(20)))
    assert sum(admitted) == 5


async def test_a_dead_replicas_sessions_free_their_slots_after_the_ttl(replicas) -> None:
    first, _, prefix = replicas
    limits = TenantLimits(first, TenantLimitSettings(max_sessions=1, session_ttl_seconds=0.3), prefix=prefix)
    await limits.acquire_session("acme", "crashed")  # never released nor refreshed
    with pytest.raises(TenantLimitExceeded):
        await limits.acquire_session("acme", "new")
    await asyncio.sleep(0.4)
    await limits.acquire_session("acme", "new")


async def away_from_a_window_boundary(client: redis.asyncio.Redis) -> None:
    """The window is fixed: a test that must stay within one waits out the last 2 s of the current one."""
    seconds, micros = await client.time()
    left_ms = WINDOW_MS - (seconds * 1000 + micros // 1000) % WINDOW_MS
    if left_ms < 2000:
        await asyncio.sleep(left_ms / 1000 + 0.05)


async def test_audio_seconds_per_minute_are_counted_across_replicas(replicas) -> None:
    first, second, prefix = replicas
    await away_from_a_window_boundary(first)
    settings = TenantLimitSettings(audio_seconds_per_minute=2.0)
    a, b = TenantLimits(first, settings, prefix=prefix), TenantLimits(second, settings, prefix=prefix)
    await a.charge_audio("acme", 1.2)
    with pytest.raises(TenantLimitExceeded) as refused:
        await b.charge_audio("acme", 1.0)  # 2.2 s would pass the limit: refused and not counted
    assert 0 < (refused.value.retry_after_ms or 0) <= WINDOW_MS
    assert "2 audio seconds per minute; retry in" in refused.value.message
    await b.charge_audio("acme", 0.8)  # exactly at the limit is still within it
    await a.charge_audio("globex", 2.0)  # other tenants are counted apart
    with pytest.raises(TenantLimitExceeded):
        await a.charge_audio("acme", 0.001)
    await a.charge_audio("acme", 5.0, force=True)  # audio already produced is counted regardless


async def test_zero_means_unlimited(replicas) -> None:
    first, _, prefix = replicas
    limits = TenantLimits(first, TenantLimitSettings(), prefix=prefix)
    for index in range(50):
        await limits.acquire_session("acme", f"s{index}")
    await limits.charge_audio("acme", 10_000)
    assert [key async for key in first.scan_iter(match=f"{prefix}*")] == []  # and nothing is stored
