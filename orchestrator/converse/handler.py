"""Converse calls: the first event opens (or resumes) a session, which then serves the stream.

This is where the session's Redis record meets the live stream: a new session is created, or a
resume token is resolved and the backbone context rebuilt from the acknowledged history; the
owner lease keeps one live stream per session across replicas; a process serves at most
``max_sessions`` streams at once. With routing (``--triton-pool``) the session's models are on the
pods pinned to it (see ``orchestrator.routing.sessions`` for when pins are taken and released).

Bounds: a call lasts at most ``max_call_seconds`` and ends after ``idle_seconds`` without a client
event; a lease this call no longer holds (a refresh finds it gone: the process paused or lost Redis
longer than the lease) ends it with ABORTED; ``drain`` ends every live call with UNAVAILABLE and a
message to resume elsewhere. Each of these is a ``ConverseSession.stop``: the response in flight is
cut to what was played and stored first, nothing unacknowledged is stored, and the session stays in
Redis for its resume token. A resume rotates the token (the new one is in ``session_started``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from minmo.v1 import minmo_pb2 as pb

from minmo_contracts.tokenizer import Tokenizer
from minmo_contracts.turn_taking import DecisionPolicy
from orchestrator.converse import commands, events
from orchestrator.converse.session import DEFAULT_IDLE_SECONDS, DEFAULT_MAX_QUEUED_EVENTS, ConverseSession
from orchestrator.converse.settings import SessionSettings
from orchestrator.converse.speculation import SpeculationSettings
from orchestrator.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from orchestrator.observability import metrics
from orchestrator.routing.sessions import SessionRouting
from orchestrator.security.tenant import current_tenant
from orchestrator.server.contracts import ServerDeps
from orchestrator.state.errors import LeaseLost, SessionNotFound
from orchestrator.state.records import StoredTurn
from orchestrator.state.store import MB, SessionStore
from orchestrator.triton.errors import TritonStageError
from orchestrator.triton.routed import ModelCalls

DEFAULT_MAX_CALL_SECONDS = 3600.0
RELEASE_BOUND_SECONDS = 1.0  # the most a call's end waits to give its lease back


class ConverseService:
    def __init__(
        self,
        models: ModelCalls,
        store: SessionStore,
        *,
        max_sessions: int = 16,
        audio_meter: Callable[[str, float], Awaitable[None]] | None = None,
        routing: SessionRouting | None = None,
        tokenizer: Tokenizer | None = None,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        speculation: SpeculationSettings | None = None,
        policy: DecisionPolicy | None = None,
    ) -> None:
        self.speculation = speculation or SpeculationSettings()
        self.policy = policy or DecisionPolicy()
        self.idle_seconds = idle_seconds
        self.max_call_seconds = max_call_seconds
        self.max_queued_events = max_queued_events
        self.live: set[ConverseSession] = set()  # the sessions a drain must end
        self.draining: Unavailable | None = None
        self.audio_meter = audio_meter  # (tenant, seconds): the tenant's audio limit; raises ResourceExhausted
        self.models = models  # every session's models without routing
        self.routing = routing
        self.tokenizer = tokenizer  # None: the smoke byte tokenizer
        self.store = store
        self.max_sessions = max_sessions
        self.owner = f"orchestrator-{uuid.uuid4().hex[:12]}"
        self.active = 0

    def drain(self) -> int:
        """End every live session (UNAVAILABLE: resume elsewhere) and refuse new ones; returns how many were live."""
        self.draining = Unavailable(
            "this orchestrator is shutting down (draining): every acknowledged turn is stored; resume the session "
            "with its resume token, on any replica"
        )
        for session in list(self.live):
            session.stop(self.draining)
        return len(self.live)

    async def converse(
        self, request_iterator: AsyncIterator[pb.ClientEvent], context: Any
    ) -> AsyncIterator[pb.ServerEvent]:
        start = commands.opening(await anext(request_iterator, None))
        if self.draining is not None:
            raise self.draining
        if self.active >= self.max_sessions:
            raise ResourceExhausted(
                f"this orchestrator serves {self.max_sessions} sessions already; retry later or on another replica"
            )
        self.active += 1
        metrics.ACTIVE_SESSIONS.inc()
        try:
            async for event in self._serve(start, request_iterator):
                yield event
        finally:
            self.active -= 1
            metrics.ACTIVE_SESSIONS.dec()

    async def _serve(
        self, start: commands.Opening, request_iterator: AsyncIterator[pb.ClientEvent]
    ) -> AsyncIterator[pb.ServerEvent]:
        if isinstance(start, commands.ResumeSession):
            session_id = await self._resolve(start.token)
            token, resumed = start.token, True
            record = await self.store.get(session_id)
            settings = SessionSettings.from_dict(record.config)
        else:
            settings = start.settings
            record, token = await self.store.create(settings.to_dict(), tenant=current_tenant())
            session_id, resumed = record.session_id, False
        # The lease holder is this call, not this process: a second call on the same replica with the same
        # token must not share the live stream (it would re-take the lease and release it under the first).
        owner = f"{self.owner}/{uuid.uuid4().hex[:8]}"
        fence = await self._acquire(session_id, owner)
        session: ConverseSession | None = None
        refresher = asyncio.create_task(self._keep_lease(session_id, owner, lambda: session))
        deadline = asyncio.get_running_loop().call_later(self.max_call_seconds, lambda: self._too_long(session))
        try:
            if isinstance(start, commands.ResumeSession):
                # A new token for every resume: a token seen once (a log, a proxy) stops working once the
                # client has used its successor.
                token = await self.store.rotate_resume(session_id, start.token)
            models = await self._session_models(session_id, resumed)
            history = await self.store.history(session_id) if resumed else []
            session = ConverseSession(
                models,
                self.store,
                session_id=session_id,
                settings=settings,
                next_sequence=len(history) + 1,
                tokenizer=self.tokenizer,
                idle_seconds=self.idle_seconds,
                max_queued_events=self.max_queued_events,
                fence=fence,
                unanswered=history[-1] if history else None,
                speculation=self.speculation,
                policy=self.policy,
            )
            self.live.add(session)
            if self.draining is not None:
                session.stop(self.draining)
            if self.audio_meter is not None:
                session.charge_audio = functools.partial(self.audio_meter, current_tenant())
            # The token goes out before the first Triton call: if Triton is down, the call ends with
            # UNAVAILABLE and the client resumes the (persisted) session later.
            yield events.session_started(session_id, token, resumed=resumed, history_turns=len(history))
            try:
                await rebuild_context(session, history)
            except TritonStageError as exc:
                if not exc.invalid:
                    raise
                if not resumed:  # a session that cannot start is not kept
                    await self.store.delete(session_id)
                raise InvalidArgument(
                    f"the session's instructions and history do not fit the model's context ({exc.message}); "
                    "shorten the instructions or start a new session"
                ) from exc
            async for event in session.run(request_iterator):
                yield event
        finally:
            deadline.cancel()
            if session is not None:
                self.live.discard(session)
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            # Redis down or stalled: the lease expires by itself within its period; the call's status must not wait
            # another Redis bound for it.
            with contextlib.suppress(Unavailable, TimeoutError):
                async with asyncio.timeout(RELEASE_BOUND_SECONDS):
                    await self.store.release_lease(session_id, owner)
            # Only the client's EndSession frees the pods; after a disconnect or a failure the session
            # may resume and must find its pods again, so the pin then lives on until its TTL.
            if self.routing is not None and session is not None and session.ended_by_client:
                with contextlib.suppress(Unavailable):  # Redis down: the pin expires with its TTL instead
                    await self.routing.release(session_id)

    async def _session_models(self, session_id: str, resumed: bool) -> ModelCalls:
        """The session's pods (pinned on start, found again on resume), or the one Triton without routing."""
        if self.routing is None:
            return self.models
        try:
            return await self.routing.session_models(session_id)
        except Unavailable:
            if not resumed:  # the client never got its token: keep no session it cannot use
                await self.store.delete(session_id)
            raise

    async def _resolve(self, token: str) -> str:
        try:
            return await self.store.resolve(token, tenant=current_tenant())
        except SessionNotFound as exc:
            raise NotFound(str(exc)) from exc

    async def _acquire(self, session_id: str, owner: str) -> int:
        """Take the owner lease (its fencing token); a crashed owner's lease expires, so wait at most one period."""
        deadline = asyncio.get_running_loop().time() + self.store.lease_ms / 1000 + 1.0
        while (fence := await self.store.take_lease(session_id, owner)) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise FailedPrecondition(f"session {session_id} is live on another connection; end that one first")
            await asyncio.sleep(0.25)
        return fence

    def _too_long(self, session: ConverseSession | None) -> None:
        if session is not None:
            session.stop(
                DeadlineExceeded(
                    f"the call reached its longest allowed duration ({self.max_call_seconds:g} s); the session is "
                    "kept: resume it with its resume token to go on"
                )
            )

    async def _keep_lease(
        self, session_id: str, owner: str, live: Callable[[], ConverseSession | None] = lambda: None
    ) -> None:
        """Refresh the lease every third of its life, the session's (hour-long) TTL about once a minute.

        The lease must outlive a refresh gap of a few seconds; the TTL only has to stay ahead of an
        hour, so refreshing it with the lease would cost Redis a script per session every 1.7 s for nothing.
        A Redis outage skips a beat instead of stopping the refreshes for good.
        """
        touch_every = min(TTL_TOUCH_SECONDS, self.store.ttl_seconds / 4)
        touched_at = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.store.lease_ms / 3000)
            with contextlib.suppress(Unavailable):
                if not await self.store.refresh_lease(session_id, owner):
                    # Lost (expired across a pause or an outage, perhaps taken): a newer call may own the session,
                    # and the fencing token already refuses this one's appends; end it instead of failing later.
                    session = live()
                    if session is not None:
                        session.stop(LeaseLost(session_id))
                    return
                if asyncio.get_running_loop().time() - touched_at < touch_every:
                    continue
                await self.store.touch(session_id)
                if self.routing is not None:
                    await self.routing.touch(session_id)
                touched_at = asyncio.get_running_loop().time()


async def rebuild_context(session: ConverseSession, history: list[StoredTurn]) -> None:
    """Feed the system prompt and the acknowledged history into a fresh backbone context."""
    await session.replay(history)


# How often a live session pushes its TTL (and its pod pins') forward; far below any useful TTL.
TTL_TOUCH_SECONDS = 60.0
# A live stream refreshes its lease every third of this; a crashed replica's sessions can be resumed
# elsewhere after at most this long.
LEASE_SECONDS = 5.0


def build_converse_handler(deps: ServerDeps) -> ConverseService:
    settings = deps.settings
    store = SessionStore(
        deps.redis,
        lease_seconds=LEASE_SECONDS,
        session_speech_bytes=round(settings.session_speech_mb * MB),
        tenant_speech_bytes=round(settings.tenant_speech_mb * MB),
    )
    meter = deps.admission.charge_audio if deps.admission is not None else None
    return ConverseService(
        deps.triton,
        store,
        max_sessions=settings.max_sessions,
        audio_meter=meter,
        routing=deps.routing,
        tokenizer=deps.tokenizer,
        idle_seconds=settings.session_idle_seconds,
        max_call_seconds=settings.session_max_seconds,
        max_queued_events=settings.max_queued_events,
        speculation=SpeculationSettings(
            enabled=settings.speculation,
            silence_ms=settings.speculation_silence_ms,
            start=settings.speculation_start,
        ),
        policy=DecisionPolicy(min_silence_ms=settings.respond_min_silence_ms),
    )
