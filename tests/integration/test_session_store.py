"""The session store against the real Redis at 127.0.0.1:6379; each test writes under its own key prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.errors import FailedPrecondition, NotFound, Unavailable
from orchestrator.state import SessionNotFound, SessionStore, StoredTurn, TurnConflict, build_session_store
from orchestrator.state.metering import metered_redis
from tests.integration.helpers import delete_matching

REDIS_URL = "redis://127.0.0.1:6379/0"
TTL = 600


def user_speech(sequence: int, rows: int = 6, dim: int = 4) -> StoredTurn:
    embeddings = np.arange(rows * dim, dtype=np.float32).reshape(rows, dim) + sequence
    return StoredTurn(sequence, "user", "", (), 480, speech_embeddings=embeddings.tobytes(), embedding_dim=dim)


def assistant(sequence: int, text: str = "Hello there.", interrupted: bool = False) -> StoredTurn:
    return StoredTurn(sequence, "assistant", text, (101, 102, 103), 1200, interrupted=interrupted)


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:minmo:"


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except RedisError as exc:
        pytest.fail(f"no Redis at {REDIS_URL} ({exc}): `minmo stack up` starts one")
    yield client
    await delete_matching(client, f"{prefix}*")
    await client.aclose()


@pytest.fixture
def store(redis: Redis, prefix: str) -> SessionStore:
    return SessionStore(redis, prefix=prefix, ttl_seconds=TTL)


async def keys_under(redis: Redis, prefix: str) -> list[bytes]:
    return sorted([key async for key in redis.scan_iter(match=f"{prefix}*")])


async def test_a_created_session_reads_back_and_its_token_resolves(store: SessionStore, redis: Redis, prefix: str):
    config = {"instructions": "Be brief.", "voice": "default", "turn_detection": "model"}
    record, token = await store.create(config)

    assert record.config == config and record.next_sequence == 1 and record.owner is None
    assert await store.resolve(token) == record.session_id
    assert await store.get(record.session_id) == record
    assert await store.history(record.session_id) == []
    # Only a digest of the secret reaches Redis.
    for key in await keys_under(redis, prefix):
        assert token.encode() not in key
        assert token.encode() not in (await redis.dump(key) or b"")

    with pytest.raises(SessionNotFound):
        await store.resolve(token + "x")
    with pytest.raises(SessionNotFound):
        await store.get("no-such-session")


async def test_turns_come_back_in_order_and_advance_the_cursor(store: SessionStore):
    record, _ = await store.create({})
    turns = [user_speech(1), assistant(2, interrupted=True), StoredTurn(3, "user", "Und auf Deutsch?", (7, 8), 0)]
    for turn in turns:
        assert await store.append_turn(record.session_id, turn) is True

    assert await store.history(record.session_id) == turns
    assert (await store.get(record.session_id)).next_sequence == 4


async def test_a_retried_append_stores_nothing_twice(store: SessionStore, redis: Redis):
    record, _ = await store.create({})
    assert await store.append_turn(record.session_id, user_speech(1)) is True
    assert await store.append_turn(record.session_id, user_speech(1)) is False

    assert await store.history(record.session_id) == [user_speech(1)]
    _, turns, speech, _ = store.session_keys(record.session_id)
    assert await redis.llen(turns) == 1 and await redis.hlen(speech) == 1


async def test_a_gap_or_a_different_turn_at_a_stored_sequence_is_a_conflict(store: SessionStore):
    record, _ = await store.create({})
    with pytest.raises(TurnConflict) as gap:
        await store.append_turn(record.session_id, assistant(2))
    assert gap.value.next_sequence == 1

    await store.append_turn(record.session_id, user_speech(1))
    different_speech = user_speech(1, rows=7)
    for other in (assistant(1), StoredTurn(1, "user", "typed", (), 480), different_speech):
        with pytest.raises(TurnConflict) as conflict:
            await store.append_turn(record.session_id, other)
        assert conflict.value.next_sequence == 2
    assert await store.history(record.session_id) == [user_speech(1)]


async def test_unknown_sessions_are_not_found(store: SessionStore):
    for call in (
        store.append_turn("gone", assistant(1)),
        store.history("gone"),
        store.touch("gone"),
        store.delete("gone"),
        store.acquire_lease("gone", "replica-a"),
    ):
        with pytest.raises(SessionNotFound):
            await call


async def test_racing_appends_of_one_sequence_store_exactly_one(store: SessionStore, prefix: str):
    other_client = Redis.from_url(REDIS_URL)
    other = SessionStore(other_client, prefix=prefix, ttl_seconds=TTL)
    try:
        record, _ = await store.create({})
        sid = record.session_id
        for sequence in range(1, 21, 2):
            same = await asyncio.gather(
                store.append_turn(sid, assistant(sequence)), other.append_turn(sid, assistant(sequence))
            )
            assert sorted(same) == [False, True]
            rival = await asyncio.gather(
                store.append_turn(sid, assistant(sequence + 1, "one")),
                other.append_turn(sid, assistant(sequence + 1, "two")),
                return_exceptions=True,
            )
            assert sum(result is True for result in rival) == 1
            assert sum(isinstance(result, TurnConflict) for result in rival) == 1
        history = await store.history(sid)
        assert [turn.sequence for turn in history] == list(range(1, 21))
    finally:
        await other_client.aclose()


async def test_only_one_owner_holds_the_lease_and_only_it_refreshes_or_releases(store: SessionStore):
    record, _ = await store.create({})
    sid = record.session_id
    assert await store.acquire_lease(sid, "replica-a") is True
    assert await store.acquire_lease(sid, "replica-b") is False
    assert await store.acquire_lease(sid, "replica-a") is True  # the holder re-acquires
    assert (await store.get(sid)).owner == "replica-a"

    assert await store.refresh_lease(sid, "replica-b") is False
    await store.release_lease(sid, "replica-b")
    assert (await store.get(sid)).owner == "replica-a"
    assert await store.refresh_lease(sid, "replica-a") is True

    await store.release_lease(sid, "replica-a")
    assert (await store.get(sid)).owner is None
    assert await store.acquire_lease(sid, "replica-b") is True


async def test_an_expired_lease_passes_to_another_owner(redis: Redis, prefix: str):
    store = SessionStore(redis, prefix=prefix, ttl_seconds=TTL, lease_seconds=0.2)
    record, _ = await store.create({})
    sid = record.session_id
    assert await store.acquire_lease(sid, "replica-a") is True
    assert await store.acquire_lease(sid, "replica-b") is False
    await asyncio.sleep(0.35)

    assert await store.acquire_lease(sid, "replica-b") is True
    assert await store.refresh_lease(sid, "replica-a") is False
    assert (await store.get(sid)).owner == "replica-b"


async def test_append_and_touch_refresh_the_ttl_of_every_key(store: SessionStore, redis: Redis, prefix: str):
    record, token = await store.create({})
    sid = record.session_id
    await store.append_turn(sid, user_speech(1))
    keys = [*store.session_keys(sid)[:3], store.resume_key(token)]
    assert sorted(key.encode() for key in keys) == await keys_under(redis, prefix)

    async def shorten_all() -> None:
        for key in keys:
            await redis.expire(key, 5)

    await shorten_all()
    await store.append_turn(sid, assistant(2))
    assert min([await redis.ttl(key) for key in keys]) >= TTL - 2

    await shorten_all()
    await store.touch(sid)
    assert min([await redis.ttl(key) for key in keys]) >= TTL - 2


async def test_a_session_expires_after_its_ttl(redis: Redis, prefix: str):
    store = SessionStore(redis, prefix=prefix, ttl_seconds=1)
    record, token = await store.create({})
    await store.append_turn(record.session_id, user_speech(1))
    await asyncio.sleep(1.2)

    with pytest.raises(SessionNotFound):
        await store.resolve(token)
    with pytest.raises(SessionNotFound):
        await store.get(record.session_id)
    assert await keys_under(redis, prefix) == []


async def test_delete_removes_every_key_and_the_token(store: SessionStore, redis: Redis, prefix: str):
    kept, kept_token = await store.create({"other": True})
    record, token = await store.create({})
    sid = record.session_id
    await store.append_turn(sid, user_speech(1))
    await store.acquire_lease(sid, "replica-a")

    await store.delete(sid)

    kept_keys = [store.session_key(kept.session_id).encode(), store.resume_key(kept_token).encode()]
    assert await keys_under(redis, prefix) == sorted(kept_keys)
    with pytest.raises(SessionNotFound):
        await store.resolve(token)
    with pytest.raises(SessionNotFound):
        await store.get(sid)
    with pytest.raises(SessionNotFound):
        await store.delete(sid)


async def test_speech_embeddings_round_trip_beside_the_history(store: SessionStore, redis: Redis):
    record, _ = await store.create({})
    embeddings = np.random.default_rng(0).standard_normal((50, 896)).astype(np.float32)
    turn = StoredTurn(1, "user", "", (), 2000, speech_embeddings=embeddings.tobytes(), embedding_dim=896)
    await store.append_turn(record.session_id, turn)

    (stored,) = await store.history(record.session_id)
    np.testing.assert_array_equal(stored.speech_matrix(), embeddings)
    _, turns, _, _ = store.session_keys(record.session_id)
    assert len(await redis.lindex(turns, 0) or b"") < 200  # the list entry stays small
    (light,) = await store.history(record.session_id, include_speech=False)
    assert light.speech_embeddings == b"" and light.audio_ms == 2000


async def test_history_survives_a_new_redis_client(prefix: str, redis: Redis):
    first = build_session_store(REDIS_URL, prefix=prefix, ttl_seconds=TTL)
    record, token = await first.create({"voice": "a"})
    turns = [user_speech(1), assistant(2)]
    for turn in turns:
        await first.append_turn(record.session_id, turn)
    await first.aclose()

    restarted = build_session_store(REDIS_URL, prefix=prefix, ttl_seconds=TTL)
    try:
        sid = await restarted.resolve(token)
        assert sid == record.session_id
        assert await restarted.history(sid) == turns
        assert (await restarted.get(sid)).next_sequence == 3
    finally:
        await restarted.aclose()


async def test_a_turn_append_is_one_redis_round_trip(prefix: str, redis: Redis):
    client, meter = metered_redis(REDIS_URL)
    store = SessionStore(client, prefix=prefix, ttl_seconds=TTL)
    try:
        record, _ = await store.create({})
        await store.append_turn(record.session_id, user_speech(1))  # connects, loads the script once

        before = meter.snapshot()
        await store.append_turn(record.session_id, assistant(2))
        assert (meter.round_trips - before[0], meter.commands - before[1]) == (1, 1)

        before = meter.snapshot()
        await store.touch(record.session_id)
        await store.refresh_lease(record.session_id, "replica-a")
        assert meter.round_trips - before[0] == 2
    finally:
        await client.aclose()


async def test_get_session_shows_the_history_without_speech_and_the_owner(store: SessionStore):
    record, _ = await store.create({"instructions": "Be brief."})
    await store.append_turn(record.session_id, user_speech(1))
    await store.append_turn(record.session_id, assistant(2, interrupted=True))
    await store.acquire_lease(record.session_id, "replica-a")

    session = await store.session_proto(record.session_id, lambda config: pb.SessionConfig(**config))

    assert session.session_id == record.session_id and session.active
    assert session.config.instructions == "Be brief."
    assert [(t.sequence, t.role, t.audio_ms, t.interrupted) for t in session.turns] == [
        (1, "user", 480, False),
        (2, "assistant", 1200, True),
    ]
    assert session.turns[1].text == "Hello there."


async def test_errors_carry_their_grpc_meaning(store: SessionStore):
    record, _ = await store.create({})
    with pytest.raises(NotFound):
        await store.get("gone")
    with pytest.raises(FailedPrecondition):
        await store.append_turn(record.session_id, assistant(5))

    unreachable = build_session_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(Unavailable, match="Redis"):
        await unreachable.get(record.session_id)
    await unreachable.aclose()


def test_a_decoding_client_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        SessionStore(Redis.from_url(REDIS_URL, decode_responses=True))
