"""Redis holds the truth: session config, the ordered turn history, the resume cursor, the owner lease.

Key layout (``P`` is the prefix, ``minmo:`` by default):

- ``P session:<id>``          hash: ``config`` (JSON), ``created_at`` (Unix time), ``resume`` and ``resume_prev``
                              (digests of the current and the previous token), ``tenant`` (the owner; absent in
                              records from before tenants: the default tenant), ``fence`` (fencing token of the
                              owner lease), ``speech_bytes`` (stored embeddings, for the quota)
- ``P session:<id>:turns``    list: one deterministic JSON per acknowledged turn, index = sequence - 1
- ``P session:<id>:speech``   hash: sequence -> a spoken user turn's float32 encoder embeddings; one key
                              rather than one per turn, so refreshing and deleting stay O(1) commands
- ``P session:<id>:lease``    string: the owning replica, with its own short PX expiry
- ``P resume:<sha256(token)>`` string: the session id; only a digest of the secret token sits in Redis
- ``P tenant:<t>:speech``     hash (+ ``:expiry`` zset): a tenant's stored speech per session, with the
                              tenant speech quota on (``tenant_speech_bytes``)

The resume cursor is ``LLEN turns + 1``: the list is the one source of it. Every key but the lease
expires ``ttl_seconds`` after the session's last activity (an append or a touch). Each write is one
Lua script or one MULTI/EXEC, so one round trip: an append is one EVALSHA running 8 commands inside
Redis (9 with speech embeddings). The first call of each script on a fresh Redis adds NOSCRIPT and a
SCRIPT LOAD, once.

Tenants: ``resolve``, ``get``, ``delete`` and ``session_proto`` take the caller's ``tenant``; another
tenant's session answers exactly as a missing one does (``SessionNotFound``), so no one learns that it
exists. ``tenant=None`` skips the check (the store's own callers, which already checked). An id that
is not a session id at all (``orchestrator.state.ids``) answers the same, before any Redis key is built.

Ownership is fenced: ``acquire_lease`` returns a fencing token, +1 for every new owner, and
``append_turn`` with that token is refused (``LeaseLost``) once a newer owner took the lease, so a
replica that paused longer than its lease cannot append turns behind the new owner's back.
Resume tokens rotate on every resume (``rotate_resume``); the token used stays valid until the new
one is used, so a client that never received the new token is not locked out.
Stored speech has quotas per session and per tenant, checked in the append script: a spoken turn
over either is refused whole (``SpeechQuotaExceeded``, RESOURCE_EXHAUSTED) and nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from minmo.v1 import minmo_pb2 as pb
from redis.asyncio import Redis
from redis.typing import EncodableT

from orchestrator.errors import ResourceExhausted
from orchestrator.state import scripts
from orchestrator.state.errors import LeaseLost, SessionNotFound, TurnConflict, unavailable_on_redis_failure
from orchestrator.state.ids import is_session_id
from orchestrator.state.records import DEFAULT_TENANT, SessionRecord, StoredTurn, decode_turn, encode_turn

_CONFLICT_REASONS = {-2: "a different turn holds this sequence", -3: "the sequence skips ahead"}
MB = 1 << 20


class SpeechQuotaExceeded(ResourceExhausted):
    """A spoken turn would pass a quota of stored speech embeddings; the turn is not stored."""

    def __init__(self, whose: str, limit_bytes: int) -> None:
        advice = (
            "start a new session, or go on with typed turns"
            if whose == "session"
            else "delete sessions you no longer need (DeleteSession) or wait for old ones to expire"
        )
        super().__init__(
            f"this spoken turn was not stored: the {whose}'s stored speech would pass its quota of "
            f"{limit_bytes / MB:g} MB; {advice}"
        )
        self.whose = whose


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Session state in Redis; any replica can serve any session, the lease says which one does now."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "minmo:",
        ttl_seconds: int = 3600,
        lease_seconds: float = 15.0,
        owns_redis: bool = False,
        session_speech_bytes: int = 0,
        tenant_speech_bytes: int = 0,
    ) -> None:
        """``session_speech_bytes`` / ``tenant_speech_bytes``: quotas of stored speech embeddings (0: none)."""
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("SessionStore needs a Redis client with decode_responses=False (embeddings are bytes)")
        if ttl_seconds < 1 or lease_seconds <= 0:
            raise ValueError(f"ttl_seconds ({ttl_seconds}) must be >= 1 and lease_seconds ({lease_seconds}) > 0")
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = int(ttl_seconds)
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self._owns_redis = owns_redis
        self.session_speech_bytes = max(0, int(session_speech_bytes))
        self.tenant_speech_bytes = max(0, int(tenant_speech_bytes))
        self._rotate = redis.register_script(scripts.ROTATE_RESUME)
        self._append = redis.register_script(scripts.APPEND_TURN)
        self._touch = redis.register_script(scripts.TOUCH)
        self._delete = redis.register_script(scripts.DELETE)
        self._resolve = redis.register_script(scripts.RESOLVE)
        self._acquire = redis.register_script(scripts.ACQUIRE_LEASE)
        self._refresh = redis.register_script(scripts.REFRESH_LEASE)
        self._release = redis.register_script(scripts.RELEASE_LEASE)

    # Key names -----------------------------------------------------------------------------------

    def session_key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def session_keys(self, session_id: str) -> list[str]:
        """Session hash, turns, speech, lease: the order every script takes them in."""
        base = self.session_key(session_id)
        return [base, f"{base}:turns", f"{base}:speech", f"{base}:lease"]

    def resume_key(self, resume_token: str) -> str:
        return f"{self.prefix}resume:{_digest(resume_token)}"

    @property
    def _resume_prefix(self) -> str:
        return f"{self.prefix}resume:"

    # Sessions ------------------------------------------------------------------------------------

    @unavailable_on_redis_failure
    async def create(self, config: dict[str, Any], *, tenant: str = DEFAULT_TENANT) -> tuple[SessionRecord, str]:
        """A new session of ``tenant`` and its resume token (a secret: whoever holds it continues the session)."""
        session_id = uuid.uuid4().hex
        token = secrets.token_urlsafe(32)
        created_at = time.time()
        config_json = json.dumps(config, sort_keys=True)
        fields: dict[EncodableT, EncodableT] = {
            "config": config_json,
            "created_at": repr(created_at),
            "resume": _digest(token),
            "tenant": tenant,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.session_key(session_id), mapping=fields)
            pipe.expire(self.session_key(session_id), self.ttl_seconds)
            pipe.set(self.resume_key(token), session_id, ex=self.ttl_seconds)
            await pipe.execute()
        record = SessionRecord(
            session_id, json.loads(config_json), created_at, next_sequence=1, owner=None, tenant=tenant
        )
        return record, token

    @unavailable_on_redis_failure
    async def resolve(self, resume_token: str, *, tenant: str | None = None) -> str:
        """The session id a resume token names; SessionNotFound once it expired, was deleted, or is another tenant's."""
        args = [self.session_key(""), tenant or "", DEFAULT_TENANT]
        session_id = await self._resolve(keys=[self.resume_key(resume_token)], args=args)
        if session_id is None:
            raise SessionNotFound("resume token")
        return session_id.decode() if isinstance(session_id, bytes) else str(session_id)

    @unavailable_on_redis_failure
    async def rotate_resume(self, session_id: str, used_token: str) -> str:
        """A new resume token for the session, replacing ``used_token``; SessionNotFound if it no longer works."""
        token = secrets.token_urlsafe(32)
        args: list[EncodableT] = [
            _digest(used_token),
            _digest(token),
            self._resume_prefix,
            self.ttl_seconds,
            session_id,
        ]
        if not await self._rotate(keys=[self.session_key(session_id)], args=args):
            raise SessionNotFound("resume token")
        return token

    @unavailable_on_redis_failure
    async def get(self, session_id: str, *, tenant: str | None = None) -> SessionRecord:
        if not is_session_id(session_id):
            raise SessionNotFound(session_id[:64])
        hash_key, turns, _, lease = self.session_keys(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(hash_key, ["config", "created_at", "tenant"])
            pipe.llen(turns)
            pipe.get(lease)
            (config, created_at, owner_tenant), length, owner = await pipe.execute()
        stored_tenant = owner_tenant.decode() if owner_tenant is not None else DEFAULT_TENANT
        if config is None or (tenant is not None and stored_tenant != tenant):
            raise SessionNotFound(session_id)
        return SessionRecord(
            session_id=session_id,
            config=json.loads(config),
            created_at=float(created_at),
            next_sequence=int(length) + 1,
            owner=owner.decode() if owner is not None else None,
            tenant=stored_tenant,
        )

    @unavailable_on_redis_failure
    async def history(self, session_id: str, *, include_speech: bool = True) -> list[StoredTurn]:
        """The acknowledged turns in order; ``include_speech=False`` skips the (large) embeddings."""
        hash_key, turns, speech, _ = self.session_keys(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(hash_key)
            pipe.lrange(turns, 0, -1)
            if include_speech:
                pipe.hgetall(speech)
            exists, raw_turns, *rest = await pipe.execute()
        if not exists:
            raise SessionNotFound(session_id)
        embeddings: dict[bytes, bytes] = rest[0] if rest else {}
        return [decode_turn(raw, embeddings.get(str(index).encode(), b"")) for index, raw in enumerate(raw_turns, 1)]

    @unavailable_on_redis_failure
    async def append_turn(self, session_id: str, turn: StoredTurn, *, fence: int | None = None) -> bool:
        """Persist the next turn atomically; True when stored, False when this exact turn already was.

        Idempotent by sequence so a retried acknowledgement never duplicates a turn; TurnConflict when
        the sequence skips ahead or another turn already holds it (e.g. a racing replica). ``fence``:
        the token ``acquire_lease`` gave; LeaseLost when a newer owner has taken the session since.
        SpeechQuotaExceeded when a spoken turn would pass a speech quota (nothing stored).
        """
        keys = self.session_keys(session_id)[:3]
        turn_json, speech = encode_turn(turn), turn.speech_embeddings
        args: list[EncodableT] = [
            turn.sequence,
            turn_json,
            speech,
            self.ttl_seconds,
            self._resume_prefix,
            "" if fence is None else fence,
            self.session_speech_bytes,
            self.tenant_speech_bytes,
            self.prefix,
            DEFAULT_TENANT,
            session_id,
        ]
        status, next_sequence = await self._append(keys=keys, args=args)
        if status == -1:
            raise SessionNotFound(session_id)
        if status == -4:
            raise LeaseLost(session_id)
        if status == -5:
            raise SpeechQuotaExceeded("session", self.session_speech_bytes)
        if status == -6:
            raise SpeechQuotaExceeded("tenant", self.tenant_speech_bytes)
        if status < 0:
            raise TurnConflict(session_id, turn.sequence, int(next_sequence), _CONFLICT_REASONS[int(status)])
        return bool(status == 1)

    @unavailable_on_redis_failure
    async def touch(self, session_id: str) -> None:
        """Refresh the TTL of every session key on activity that stores nothing (audio without a turn)."""
        args: list[EncodableT] = [self.ttl_seconds, self._resume_prefix, self.prefix, DEFAULT_TENANT, session_id]
        found = await self._touch(keys=self.session_keys(session_id)[:3], args=args)
        if not found:
            raise SessionNotFound(session_id)

    @unavailable_on_redis_failure
    async def delete(self, session_id: str, *, tenant: str | None = None) -> None:
        """Remove every key of the session, the resume mappings and the lease included."""
        if not is_session_id(session_id):
            raise SessionNotFound(session_id[:64])
        args = [self._resume_prefix, tenant or "", DEFAULT_TENANT, self.prefix, session_id]
        if not await self._delete(keys=self.session_keys(session_id), args=args):
            raise SessionNotFound(session_id)

    async def session_proto(
        self,
        session_id: str,
        config_to_proto: Callable[[dict[str, Any]], pb.SessionConfig],
        *,
        tenant: str | None = None,
    ) -> pb.Session:
        """The session as GetSession answers it; the config's dict form belongs to the caller, so it converts it."""
        record = await self.get(session_id, tenant=tenant)
        turns = await self.history(session_id, include_speech=False)
        return pb.Session(
            session_id=session_id,
            config=config_to_proto(record.config),
            turns=[
                pb.Turn(
                    sequence=turn.sequence,
                    role=turn.role,
                    text=turn.text,
                    audio_ms=turn.audio_ms,
                    interrupted=turn.interrupted,
                )
                for turn in turns
            ],
            active=record.owner is not None,
        )

    # Owner lease ---------------------------------------------------------------------------------

    async def acquire_lease(self, session_id: str, owner: str) -> bool:
        """Take (or re-take) the session's live stream; False while another owner's lease runs."""
        return await self.take_lease(session_id, owner) is not None

    @unavailable_on_redis_failure
    async def take_lease(self, session_id: str, owner: str) -> int | None:
        """Take (or re-take) the session's live stream: its fencing token, or None while another owner's lease runs."""
        hash_key, *_, lease = self.session_keys(session_id)
        status, fence = await self._acquire(keys=[hash_key, lease], args=[owner, self.lease_ms])
        if status == -1:
            raise SessionNotFound(session_id)
        return int(fence) if status == 1 else None

    @unavailable_on_redis_failure
    async def refresh_lease(self, session_id: str, owner: str) -> bool:
        """Extend the lease; False when ``owner`` no longer holds it (expired, or taken over)."""
        lease = self.session_keys(session_id)[3]
        return bool(await self._refresh(keys=[lease], args=[owner, self.lease_ms]))

    @unavailable_on_redis_failure
    async def release_lease(self, session_id: str, owner: str) -> None:
        """Give the lease up; a no-op unless ``owner`` holds it."""
        await self._release(keys=[self.session_keys(session_id)[3]], args=[owner])

    async def aclose(self) -> None:
        """Close the Redis client when this store built it (``build_session_store``)."""
        if self._owns_redis:
            await self.redis.aclose()


def build_session_store(redis_url: str, **kwargs: Any) -> SessionStore:
    """A store over its own client for ``redis_url`` (e.g. ``redis://127.0.0.1:6379/0``); close with aclose()."""
    return SessionStore(Redis.from_url(redis_url, decode_responses=False), owns_redis=True, **kwargs)
