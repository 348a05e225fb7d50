"""Converse calls: the first event opens (or resumes) a session, which then serves the stream.

This is where the session's Redis record meets the live stream: a new session is created, or a
resume token is resolved and the backbone context rebuilt from the acknowledged history; the
owner lease keeps one live stream per session across replicas; a process serves at most
``max_sessions`` streams at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from minmo.v1 import minmo_pb2 as pb

from orchestrator.converse import events
from orchestrator.converse.session import ConverseSession
from orchestrator.converse.settings import SessionSettings
from orchestrator.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from orchestrator.observability import metrics
from orchestrator.server.contracts import ServerDeps
from orchestrator.state.errors import SessionNotFound
from orchestrator.state.records import StoredTurn
from orchestrator.state.store import SessionStore
from orchestrator.triton.client import TritonModels
from services.backbone import SpeechTurn, TextTurn
from services.backbone.prompt import Turn


class ConverseService:
    def __init__(self, models: TritonModels, store: SessionStore, *, max_sessions: int = 16) -> None:
        self.models = models
        self.store = store
        self.max_sessions = max_sessions
        self.owner = f"orchestrator-{uuid.uuid4().hex[:12]}"
        self.active = 0

    async def converse(
        self, request_iterator: AsyncIterator[pb.ClientEvent], context: Any
    ) -> AsyncIterator[pb.ServerEvent]:
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("event") != "session":
            raise InvalidArgument("the first Converse event must be `session` (a SessionConfig or a resume_token)")
        if self.active >= self.max_sessions:
            raise ResourceExhausted(
                f"this orchestrator serves {self.max_sessions} sessions already; retry later or on another replica"
            )
        self.active += 1
        metrics.ACTIVE_SESSIONS.inc()
        try:
            async for event in self._serve(first.session, request_iterator):
                yield event
        finally:
            self.active -= 1
            metrics.ACTIVE_SESSIONS.dec()

    async def _serve(
        self, start: pb.SessionStart, request_iterator: AsyncIterator[pb.ClientEvent]
    ) -> AsyncIterator[pb.ServerEvent]:
        which = start.WhichOneof("start")
        if which == "resume_token":
            session_id = await self._resolve(start.resume_token)
            token, resumed = start.resume_token, True
            record = await self.store.get(session_id)
            settings = SessionSettings.from_dict(record.config)
        else:
            settings = SessionSettings.from_proto(start.config)
            record, token = await self.store.create(settings.to_dict())
            session_id, resumed = record.session_id, False
        await self._acquire(session_id)
        refresher = asyncio.create_task(self._keep_lease(session_id))
        try:
            history = await self.store.history(session_id) if resumed else []
            session = ConverseSession(
                self.models, self.store, session_id=session_id, settings=settings, next_sequence=len(history) + 1
            )
            # The token goes out before the first Triton call: if Triton is down, the call ends with
            # UNAVAILABLE and the client resumes the (persisted) session later.
            yield events.session_started(session_id, token, resumed=resumed, history_turns=len(history))
            await rebuild_context(session, history)
            async for event in session.run(request_iterator):
                yield event
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await self.store.release_lease(session_id, self.owner)

    async def _resolve(self, token: str) -> str:
        try:
            return await self.store.resolve(token)
        except SessionNotFound as exc:
            raise NotFound(str(exc)) from exc

    async def _acquire(self, session_id: str) -> None:
        """Take the owner lease; a crashed owner's lease expires, so wait for at most one lease period."""
        deadline = asyncio.get_running_loop().time() + self.store.lease_ms / 1000 + 1.0
        while not await self.store.acquire_lease(session_id, self.owner):
            if asyncio.get_running_loop().time() > deadline:
                raise FailedPrecondition(f"session {session_id} is live on another connection; end that one first")
            await asyncio.sleep(0.25)

    async def _keep_lease(self, session_id: str) -> None:
        while True:
            await asyncio.sleep(self.store.lease_ms / 3000)
            await self.store.refresh_lease(session_id, self.owner)
            await self.store.touch(session_id)


async def rebuild_context(session: ConverseSession, history: list[StoredTurn]) -> None:
    """Feed the system prompt and the acknowledged history into a fresh backbone context."""
    prompt = session.context.prompt
    turns: list[Turn] = []
    speech = {}
    for turn in history:
        if turn.role == "user" and turn.embedding_dim:
            key = str(turn.sequence)
            speech[key] = turn.speech_matrix()
            turns.append(SpeechTurn(key))
        elif turn.role == "user":
            turns.append(TextTurn("user", turn.text))
        else:
            turns.append(TextTurn("assistant", turn.text, token_ids=turn.token_ids))
    segments = prompt.conversation(turns, system_prompt=session.settings.instructions)
    await session.context.rebuild(segments, speech)


# A live stream refreshes its lease every third of this; a crashed replica's sessions can be resumed
# elsewhere after at most this long.
LEASE_SECONDS = 5.0


def build_converse_handler(deps: ServerDeps) -> ConverseService:
    store = SessionStore(deps.redis, lease_seconds=LEASE_SECONDS)
    return ConverseService(deps.triton, store, max_sessions=deps.settings.max_sessions)
