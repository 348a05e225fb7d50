"""Converse calls: the first event opens (or resumes) a session, which then serves the stream.

This is where the session's Redis record meets the live stream: a new session is created, or a
resume token is resolved and the backbone context rebuilt from the acknowledged history; the
owner lease keeps one live stream per session across replicas; a process serves at most
``max_sessions`` streams at once. With routing (``--triton-pool``) the session's models are on the
pods pinned to it (see ``orchestrator.routing.sessions`` for when pins are taken and released).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from minmo.v1 import minmo_pb2 as pb

from orchestrator.converse import commands, events
from orchestrator.converse.session import ConverseSession
from orchestrator.converse.settings import SessionSettings
from orchestrator.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from orchestrator.observability import metrics
from orchestrator.routing.sessions import SessionRouting
from orchestrator.security.tenant import current_tenant
from orchestrator.server.contracts import ServerDeps
from orchestrator.state.errors import SessionNotFound
from orchestrator.state.records import StoredTurn
from orchestrator.state.store import SessionStore
from orchestrator.triton.errors import TritonStageError
from orchestrator.triton.routed import ModelCalls
from services.backbone.tokenizer import Tokenizer


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
    ) -> None:
        self.audio_meter = audio_meter  # (tenant, seconds): the tenant's audio limit; raises ResourceExhausted
        self.models = models  # every session's models without routing
        self.routing = routing
        self.tokenizer = tokenizer  # None: the smoke byte tokenizer
        self.store = store
        self.max_sessions = max_sessions
        self.owner = f"orchestrator-{uuid.uuid4().hex[:12]}"
        self.active = 0

    async def converse(
        self, request_iterator: AsyncIterator[pb.ClientEvent], context: Any
    ) -> AsyncIterator[pb.ServerEvent]:
        start = commands.opening(await anext(request_iterator, None))
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
        await self._acquire(session_id, owner)
        refresher = asyncio.create_task(self._keep_lease(session_id, owner))
        session: ConverseSession | None = None
        try:
            models = await self._session_models(session_id, resumed)
            history = await self.store.history(session_id) if resumed else []
            session = ConverseSession(
                models,
                self.store,
                session_id=session_id,
                settings=settings,
                next_sequence=len(history) + 1,
                tokenizer=self.tokenizer,
            )
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
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
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

    async def _acquire(self, session_id: str, owner: str) -> None:
        """Take the owner lease; a crashed owner's lease expires, so wait for at most one lease period."""
        deadline = asyncio.get_running_loop().time() + self.store.lease_ms / 1000 + 1.0
        while not await self.store.acquire_lease(session_id, owner):
            if asyncio.get_running_loop().time() > deadline:
                raise FailedPrecondition(f"session {session_id} is live on another connection; end that one first")
            await asyncio.sleep(0.25)

    async def _keep_lease(self, session_id: str, owner: str) -> None:
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
                await self.store.refresh_lease(session_id, owner)
                if asyncio.get_running_loop().time() - touched_at < touch_every:
                    continue
                await self.store.touch(session_id)
                if self.routing is not None:
                    await self.routing.touch(session_id)
                touched_at = asyncio.get_running_loop().time()


async def rebuild_context(session: ConverseSession, history: list[StoredTurn]) -> None:
    """Feed the system prompt and the acknowledged history into a fresh backbone context."""
    await session.context.replay(history, instructions=session.settings.instructions)


# How often a live session pushes its TTL (and its pod pins') forward; far below any useful TTL.
TTL_TOUCH_SECONDS = 60.0
# A live stream refreshes its lease every third of this; a crashed replica's sessions can be resumed
# elsewhere after at most this long.
LEASE_SECONDS = 5.0


def build_converse_handler(deps: ServerDeps) -> ConverseService:
    store = SessionStore(deps.redis, lease_seconds=LEASE_SECONDS)
    meter = deps.admission.charge_audio if deps.admission is not None else None
    return ConverseService(
        deps.triton,
        store,
        max_sessions=deps.settings.max_sessions,
        audio_meter=meter,
        routing=deps.routing,
        tokenizer=deps.tokenizer,
    )
