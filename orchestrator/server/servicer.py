"""``minmo.v1.MinMo``: each method decodes, delegates to its handler, and encodes.

A method whose handler this process was built without answers UNIMPLEMENTED, never a fake success.
Errors are raised as domain errors; the interceptor turns them into statuses. With ``admission``, a
Converse stream holds a session slot of the process and of the caller's tenant for its lifetime, and
the audio of Transcribe (received) and Synthesize (produced) counts against the tenant's minute.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator.errors import InvalidArgument, Unimplemented
from orchestrator.limits.admission import Admission
from orchestrator.security.tenant import current_tenant
from orchestrator.server.contracts import ConverseHandler, SessionReader, SynthesizeHandler, TranscribeHandler

_SYNTHESIZED_BYTES_PER_SECOND = 24_000 * 2  # 24 kHz PCM16


def _missing(method: str) -> Unimplemented:
    return Unimplemented(f"{method} is not available on this orchestrator build (its handler is not installed)")


def _session_id(value: str) -> str:
    if not value:
        raise InvalidArgument("session_id is empty: pass the id that SessionStarted gave")
    return value


def _input_bytes_per_second(audio_format: minmo_pb2.AudioFormat) -> int:
    """What one second of client audio weighs; a bad format is the handler's to reject, so defaults apply."""
    width = 4 if audio_format.encoding == minmo_pb2.AudioFormat.FLOAT32 else 2
    return width * (audio_format.sample_rate_hz if audio_format.sample_rate_hz > 0 else 16_000)


async def _metered_transcription(
    requests: AsyncIterator[minmo_pb2.TranscribeRequest], admission: Admission, tenant: str
) -> AsyncIterator[minmo_pb2.TranscribeRequest]:
    """The requests, each audio chunk charged to the tenant before the handler sees it."""
    bytes_per_second = 32_000
    async for request in requests:
        kind = request.WhichOneof("request")
        if kind == "config":
            bytes_per_second = _input_bytes_per_second(request.config.audio_format)
        elif kind == "audio":
            await admission.charge_audio(tenant, len(request.audio.data) / bytes_per_second)
        yield request


class MinMoServicer(minmo_pb2_grpc.MinMoServicer):
    def __init__(
        self,
        *,
        converse: ConverseHandler | None = None,
        transcribe: TranscribeHandler | None = None,
        synthesize: SynthesizeHandler | None = None,
        sessions: SessionReader | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._converse = converse
        self._transcribe = transcribe
        self._synthesize = synthesize
        self._sessions = sessions
        self._admission = admission

    async def Converse(
        self, request_iterator: AsyncIterator[minmo_pb2.ClientEvent], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.ServerEvent]:
        if self._converse is None:
            raise _missing("Converse")
        if self._admission is None:
            async for event in self._converse.converse(request_iterator, context):
                yield event
            return
        async with self._admission.session(current_tenant()):
            async for event in self._converse.converse(request_iterator, context):
                yield event

    async def Transcribe(
        self, request_iterator: AsyncIterator[minmo_pb2.TranscribeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.TranscribeResponse]:
        if self._transcribe is None:
            raise _missing("Transcribe")
        if self._admission is not None:
            request_iterator = _metered_transcription(request_iterator, self._admission, current_tenant())
        async for response in self._transcribe.transcribe(request_iterator, context):
            yield response

    async def Synthesize(
        self, request: minmo_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.SynthesizeResponse]:
        if self._synthesize is None:
            raise _missing("Synthesize")
        tenant = current_tenant()
        if self._admission is not None:
            # Refused up front once the tenant's minute is used up; audio already being made is counted
            # in full (``force``), so a synthesis in flight finishes and the next call pays.
            await self._admission.charge_audio(tenant, 0.001)
        async for response in self._synthesize.synthesize(request, context):
            if self._admission is not None:
                await self._admission.charge_audio(
                    tenant, len(response.audio) / _SYNTHESIZED_BYTES_PER_SECOND, force=True
                )
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
