"""PodRouter against the real Redis at 127.0.0.1:6379: two router instances stand for two orchestrator
replicas; each test writes under its own key prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.errors import Unavailable
from orchestrator.routing import PodEndpoint, PodRouter, StaticEndpoints
from tests.integration.helpers import delete_matching

REDIS_URL = "redis://127.0.0.1:6379/0"
TTL = 600


def pool_of(*names: str) -> list[PodEndpoint]:
    return [PodEndpoint(name, f"10.0.0.{i + 1}:8001") for i, name in enumerate(names)]


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:minmo:"


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except RedisError as exc:
        pytest.fail(f"no Redis at {REDIS_URL} ({exc}): `minmo stack up` starts one")
    yield client
    await delete_matching(client, f"{prefix}*")
    await client.aclose()


@pytest.fixture
async def second_redis() -> AsyncIterator[Redis]:
    """A separate connection, as another orchestrator replica would have."""
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def router(redis: Redis, prefix: str, pools: dict[str, list[PodEndpoint]]) -> PodRouter:
    return PodRouter(redis, StaticEndpoints(pools), ttl_seconds=TTL, prefix=prefix)


async def test_pin_is_sticky_across_two_orchestrator_replicas(redis: Redis, second_redis: Redis, prefix: str) -> None:
    pools = {"all": pool_of("p-a", "p-b", "p-c")}
    first, second = router(redis, prefix, pools), router(second_redis, prefix, pools)

    picked = await first.pick("s1")
    await first.pick("s2")  # moves the least-loaded choice elsewhere
    assert await second.pick("s1") == picked
    assert await redis.hgetall(f"{prefix}session:s1:pods") == {"all": "p-a"}
    assert 0 < await redis.ttl(f"{prefix}session:s1:pods") <= TTL
    assert await redis.smembers(f"{prefix}pool:all:pod:p-a:sessions") == {"s1"}


async def test_new_session_goes_to_the_least_loaded_pod(redis: Redis, prefix: str) -> None:
    routes = router(redis, prefix, {"all": pool_of("p-a", "p-b", "p-c")})
    await redis.sadd(f"{prefix}pool:all:pod:p-a:sessions", "x1", "x2")
    await redis.sadd(f"{prefix}pool:all:pod:p-b:sessions", "x3")
    await redis.sadd(f"{prefix}pool:all:pod:p-c:sessions", "x4", "x5", "x6")

    assert await routes.pick("s1") == {"all": "10.0.0.2:8001"}  # p-b
    assert await routes.pick("s2") == {"all": "10.0.0.1:8001"}  # p-a and p-b now tie at 2: smaller name


async def test_draining_pods_get_no_new_session_but_keep_theirs(redis: Redis, prefix: str) -> None:
    routes = router(redis, prefix, {"all": pool_of("p-a", "p-b")})
    assert await routes.pick("old") == {"all": "10.0.0.1:8001"}
    await redis.sadd(f"{prefix}pool:all:draining", "p-a")

    for i in range(3):
        assert await routes.pick(f"new{i}") == {"all": "10.0.0.2:8001"}
    assert await routes.pick("old") == {"all": "10.0.0.1:8001"}  # a resumed session stays on its pod


async def test_when_every_pod_drains_the_least_loaded_still_serves(redis: Redis, prefix: str) -> None:
    routes = router(redis, prefix, {"all": pool_of("p-a", "p-b")})
    await redis.sadd(f"{prefix}pool:all:draining", "p-a", "p-b")
    await redis.sadd(f"{prefix}pool:all:pod:p-a:sessions", "x1")
    assert await routes.pick("s1") == {"all": "10.0.0.2:8001"}


async def test_release_removes_the_pin_in_every_pool(redis: Redis, prefix: str) -> None:
    routes = router(redis, prefix, {"listen": pool_of("l-a"), "speak": pool_of("k-a", "k-b")})
    assert await routes.pick("s1") == {"listen": "10.0.0.1:8001", "speak": "10.0.0.1:8001"}
    await routes.release("s1")

    assert await redis.exists(f"{prefix}session:s1:pods") == 0
    assert await redis.scard(f"{prefix}pool:listen:pod:l-a:sessions") == 0
    assert await redis.scard(f"{prefix}pool:speak:pod:k-a:sessions") == 0


async def test_a_session_whose_pod_is_gone_is_re_pinned(redis: Redis, prefix: str) -> None:
    before = router(redis, prefix, {"all": pool_of("p-a", "p-b")})
    assert await before.pick("s1") == {"all": "10.0.0.1:8001"}
    after = router(redis, prefix, {"all": [PodEndpoint("p-b", "10.0.0.2:8001"), PodEndpoint("p-c", "10.0.0.3:8001")]})

    assert await after.pick("s1") == {"all": "10.0.0.2:8001"}
    assert await redis.hgetall(f"{prefix}session:s1:pods") == {"all": "p-b"}
    assert await redis.scard(f"{prefix}pool:all:pod:p-a:sessions") == 0


async def test_concurrent_picks_from_two_replicas_balance_exactly(
    redis: Redis, second_redis: Redis, prefix: str
) -> None:
    pools = {"all": pool_of("p-a", "p-b", "p-c", "p-d")}
    replicas = [router(redis, prefix, pools), router(second_redis, prefix, pools)]
    await asyncio.gather(*(replicas[i % 2].pick(f"s{i}") for i in range(20)))

    loads = [await redis.scard(f"{prefix}pool:all:pod:{pod}:sessions") for pod in ("p-a", "p-b", "p-c", "p-d")]
    assert loads == [5, 5, 5, 5]


async def test_a_pool_without_ready_pods_is_unavailable(redis: Redis, prefix: str) -> None:
    routes = router(redis, prefix, {"all": []})
    with pytest.raises(Unavailable, match="pool 'all' has no ready pod"):
        await routes.pick("s1")
    assert await redis.exists(f"{prefix}session:s1:pods") == 0
