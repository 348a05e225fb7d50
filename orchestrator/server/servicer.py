"""``minmo.v1.MinMo``: each method decodes, delegates to its handler, and encodes.

A method whose handler this process was built without answers UNIMPLEMENTED, never a fake success.
Errors are raised as domain errors; the interceptor turns them into statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator.errors import InvalidArgument, Unimplemented
from orchestrator.server.contracts import ConverseHandler, SessionReader, SynthesizeHandler, TranscribeHandler


def _missing(method: str) -> Unimplemented:
    return Unimplemented(f"{method} is not available on this orchestrator build (its handler is not installed)")


def _session_id(value: str) -> str:
    if not value:
        raise InvalidArgument("session_id is empty: pass the id that SessionStarted gave")
    return value


class MinMoServicer(minmo_pb2_grpc.MinMoServicer):
    def __init__(
        self,
        *,
        converse: ConverseHandler | None = None,
        transcribe: TranscribeHandler | None = None,
        synthesize: SynthesizeHandler | None = None,
        sessions: SessionReader | None = None,
    ) -> None:
        self._converse = converse
        self._transcribe = transcribe
        self._synthesize = synthesize
        self._sessions = sessions

    async def Converse(
        self, request_iterator: AsyncIterator[minmo_pb2.ClientEvent], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.ServerEvent]:
        if self._converse is None:
            raise _missing("Converse")
        async for event in self._converse.converse(request_iterator, context):
            yield event

    async def Transcribe(
        self, request_iterator: AsyncIterator[minmo_pb2.TranscribeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.TranscribeResponse]:
        if self._transcribe is None:
            raise _missing("Transcribe")
        async for response in self._transcribe.transcribe(request_iterator, context):
            yield response

    async def Synthesize(
        self, request: minmo_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.SynthesizeResponse]:
        if self._synthesize is None:
            raise _missing("Synthesize")
        async for response in self._synthesize.synthesize(request, context):
            yield response

    async def GetSession(
        self, request: minmo_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> minmo_pb2.Session:
        if self._sessions is None:
            raise _missing("GetSession")
        return await self._sessions.get(_session_id(request.session_id))

    async def DeleteSession(
        self, request: minmo_pb2.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> minmo_pb2.DeleteSessionResponse:
        if self._sessions is None:
            raise _missing("DeleteSession")
        await self._sessions.delete(_session_id(request.session_id))
        return minmo_pb2.DeleteSessionResponse()
