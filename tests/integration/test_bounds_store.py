"""Issue 13, points 3-5 and 7 at the session store, against real Redis servers (no Triton needed).

Fencing, resume-token rotation, speech quotas and session-id checks run on the shared Redis under a
prefix of their own. A stalled (SIGSTOP), read-only (a replica, as after a failover) and full
(maxmemory) Redis are private ``redis-server`` processes started here, so the shared one is never
stopped, demoted or filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import redis.asyncio

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.errors import ResourceExhausted, Unavailable
from orchestrator.server.contracts import ServeSettings
from orchestrator.server.security_config import build_redis_client
from orchestrator.state.errors import LeaseLost, SessionNotFound
from orchestrator.state.records import StoredTurn
from orchestrator.state.store import SessionStore, SpeechQuotaExceeded
from tests.integration.helpers import REDIS_URL, delete_matching

pytestmark = pytest.mark.integration
DIM = 8


def spoken(sequence: int, rows: int) -> StoredTurn:
    speech = np.ones((rows, DIM), np.float32)
    return StoredTurn(sequence, "user", "", (), 120 * rows, speech_embeddings=speech.tobytes(), embedding_dim=DIM)


def typed(sequence: int, text: str = "hi") -> StoredTurn:
    return StoredTurn(sequence, "user", text, (1, 2), 0)


@pytest.fixture
async def shared() -> AsyncIterator[tuple[redis.asyncio.Redis, str]]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"test-bounds-{os.urandom(4).hex()}:"
    yield client, prefix
    await delete_matching(client, f"{prefix}*")
    await client.aclose()


# --- 4. ownership is fenced --------------------------------------------------------------------------------------


async def test_a_replica_that_lost_its_lease_cannot_append_and_the_new_owner_keeps_the_session(shared) -> None:
    client, prefix = shared
    store = SessionStore(client, prefix=prefix, lease_seconds=0.3)
    record, _ = await store.create({})
    sid = record.session_id
    stale = await store.take_lease(sid, "replica-a")
    assert stale is not None
    await asyncio.sleep(0.5)  # replica-a pauses longer than its lease
    fresh = await store.take_lease(sid, "replica-b")
    assert fresh is not None and fresh > stale
    with pytest.raises(LeaseLost, match="newer connection"):
        await store.append_turn(sid, typed(1, "from the stale replica"), fence=stale)
    assert await store.append_turn(sid, typed(1, "from the new owner"), fence=fresh)
    assert [t.text for t in await store.history(sid)] == ["from the new owner"]
    assert not await store.refresh_lease(sid, "replica-a")  # what ends the stale call


async def test_the_same_owner_retaking_its_lease_keeps_its_fencing_token(shared) -> None:
    """A retried acquire (a reply lost to a timeout) must not fence its own caller out."""
    client, prefix = shared
    store = SessionStore(client, prefix=prefix)
    record, _ = await store.create({})
    first = await store.take_lease(record.session_id, "replica-a")
    assert await store.take_lease(record.session_id, "replica-a") == first
    assert await store.take_lease(record.session_id, "replica-b") is None
    assert await store.append_turn(record.session_id, typed(1), fence=first)


# --- 7. resume tokens rotate; session ids are checked --------------------------------------------------------------


async def test_resume_tokens_rotate_and_the_used_one_lasts_until_its_successor_is_used(shared) -> None:
    client, prefix = shared
    store = SessionStore(client, prefix=prefix)
    record, first = await store.create({})
    sid = record.session_id
    second = await store.rotate_resume(sid, first)
    assert second != first
    assert await store.resolve(second) == sid
    assert await store.resolve(first) == sid  # the client may never have received `second`
    third = await store.rotate_resume(sid, second)  # `second` was used: `first` is dead now
    with pytest.raises(SessionNotFound):
        await store.resolve(first)
    with pytest.raises(SessionNotFound):
        await store.rotate_resume(sid, first)
    assert await store.resolve(third) == sid and await store.resolve(second) == sid
    await store.delete(sid)
    for token in (second, third):
        with pytest.raises(SessionNotFound):
            await store.resolve(token)
    assert not [key async for key in client.scan_iter(match=f"{prefix}resume:*")]


@pytest.mark.parametrize("session_id", ["abc:turns", "x" * 32, "ABCDEF0123456789ABCDEF0123456789", "", "a b"])
async def test_an_id_that_is_no_session_id_is_not_found_and_touches_no_key(shared, session_id: str) -> None:
    client, prefix = shared
    store = SessionStore(client, prefix=prefix)
    record, _ = await store.create({})
    await store.append_turn(record.session_id, typed(1))
    crafted = session_id.replace("abc", record.session_id)  # another session's turn list, by key
    with pytest.raises(SessionNotFound):
        await store.get(crafted)
    with pytest.raises(SessionNotFound):
        await store.delete(crafted)
    assert len(await store.history(record.session_id)) == 1


# --- 5. stored speech has quotas ---------------------------------------------------------------------------------


async def test_a_spoken_turn_over_the_session_quota_is_refused_whole(shared) -> None:
    client, prefix = shared
    store = SessionStore(client, prefix=prefix, session_speech_bytes=4 * 10 * DIM)  # 10 rows
    record, _ = await store.create({})
    sid = record.session_id
    assert await store.append_turn(sid, spoken(1, 6))
    with pytest.raises(SpeechQuotaExceeded, match="session's stored speech") as info:
        await store.append_turn(sid, spoken(2, 6))
    assert info.value.code_name == "RESOURCE_EXHAUSTED"
    assert len(await store.history(sid)) == 1  # nothing of the refused turn
    assert await store.append_turn(sid, typed(2))  # typed turns store no speech: still fine
    assert await store.append_turn(sid, spoken(3, 4))  # exactly at the quota


async def test_the_tenant_quota_counts_every_session_and_frees_with_delete_and_expiry(shared) -> None:
    client, prefix = shared
    store = SessionStore(client, prefix=prefix, ttl_seconds=2, tenant_speech_bytes=4 * 10 * DIM)
    a, _ = await store.create({}, tenant="acme")
    b, _ = await store.create({}, tenant="acme")
    other, _ = await store.create({}, tenant="globex")
    assert await store.append_turn(a.session_id, spoken(1, 6))
    with pytest.raises(SpeechQuotaExceeded, match="tenant's stored speech"):
        await store.append_turn(b.session_id, spoken(1, 6))
    assert await store.append_turn(other.session_id, spoken(1, 6))  # tenants are counted apart
    await store.delete(a.session_id)
    assert await store.append_turn(b.session_id, spoken(1, 6))  # a's speech left the total
    await asyncio.sleep(2.5)  # b's keys expire: its speech stops counting without anyone deleting it
    c, _ = await store.create({}, tenant="acme")
    assert await store.append_turn(c.session_id, spoken(1, 10))


# --- 3. Redis cannot hang a call, and its refusals mean something ---------------------------------------------------


class PrivateRedis:
    """A redis-server of this test only (stopped, demoted or filled without harming anyone)."""

    def __init__(self, run_dir: Path, *args: str) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(run_dir),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


def serving_client(url: str) -> redis.asyncio.Redis:
    """The client ``minmo serve`` builds: its timeouts and retries are what is under test."""
    return build_redis_client(ServeSettings(redis_url=url))


STALL_BOUND_SECONDS = 10.0  # (2 retries + 1) x 2 s socket timeout + backoff = ~6.3 s, stated in the docs


async def test_a_stalled_redis_fails_a_call_with_unavailable_within_the_stated_bound(private_redis) -> None:
    client = serving_client(private_redis.url)
    store = SessionStore(client)
    record, _ = await store.create({})
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # alive, connected, answering nothing
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="Redis"):
            await store.append_turn(record.session_id, typed(1))
        took = time.monotonic() - started
        assert took < STALL_BOUND_SECONDS, f"a stalled Redis held the call {took:.1f} s"
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert await store.append_turn(record.session_id, typed(1)) in (True, False)  # back: works (or already did)
    await client.aclose()


async def test_a_read_only_redis_is_unavailable_with_a_message(tmp_path: Path, private_redis) -> None:
    """After a failover the old primary is a replica: its READONLY answer means "retry", not INTERNAL."""
    writer = SessionStore(serving_client(private_redis.url))
    record, _ = await writer.create({})
    replica = PrivateRedis(tmp_path / "replica", "--replicaof", "127.0.0.1", str(private_redis.port))
    try:
        store = SessionStore(serving_client(replica.url))
        for _ in range(100):  # the replica's first sync
            if await store.redis.exists(store.session_key(record.session_id)):
                break
            await asyncio.sleep(0.1)
        with pytest.raises(Unavailable, match="read-only"):
            await store.append_turn(record.session_id, typed(1))
        await store.redis.aclose()
    finally:
        replica.stop()
        await writer.redis.aclose()


async def test_a_full_redis_is_resource_exhausted_with_a_message(tmp_path: Path) -> None:
    full = PrivateRedis(tmp_path, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    client = serving_client(full.url)
    try:
        store = SessionStore(client)
        record, _ = await store.create({})
        with contextlib.suppress(redis.exceptions.OutOfMemoryError):
            for index in range(64):  # fill it past maxmemory with ballast of our own
                await client.set(f"ballast:{index}", b"x" * 100_000)
        with pytest.raises(ResourceExhausted, match="out of memory") as info:
            await store.append_turn(record.session_id, spoken(1, 2000))
        assert info.value.retry_after_ms
        assert not await store.history(record.session_id)  # nothing of it was stored
    finally:
        await client.aclose()
        full.stop()
