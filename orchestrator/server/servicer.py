"""``minmo.v1.MinMo``: each method decodes, delegates to its handler, and encodes.

A method whose handler this process was built without answers UNIMPLEMENTED, never a fake success.
Errors are raised as domain errors; the interceptor turns them into statuses.

Bounds (issue 13): a streaming call's first message must arrive within ``first_event_seconds``
(before it, the call holds no slot); then, with ``admission``, every Converse, Transcribe and
Synthesize call holds a slot of the process and of the caller's tenant for its lifetime and passes
load shedding. Audio counts against the tenant's minute: Transcribe's as it is received, Synthesize's
as a reservation of the most its text can make, taken before the call and trued up after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator.errors import Unimplemented
from orchestrator.limits.admission import Admission
from orchestrator.limits.calls import first_within, prepend
from orchestrator.security.tenant import current_tenant
from orchestrator.server.contracts import ConverseHandler, SessionReader, SynthesizeHandler, TranscribeHandler
from orchestrator.state.ids import checked_session_id

_SYNTHESIZED_BYTES_PER_SECOND = 24_000 * 2  # 24 kHz PCM16
DEFAULT_FIRST_EVENT_SECONDS = 10.0


def _missing(method: str) -> Unimplemented:
    return Unimplemented(f"{method} is not available on this orchestrator build (its handler is not installed)")


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
        first_event_seconds: float = DEFAULT_FIRST_EVENT_SECONDS,
    ) -> None:
        self._converse = converse
        self._transcribe = transcribe
        self._synthesize = synthesize
        self._sessions = sessions
        self._admission = admission or Admission()
        self._first_event_seconds = first_event_seconds

    def drain(self) -> int:
        """SIGTERM: end every live Converse session (UNAVAILABLE, resume elsewhere); returns how many were live."""
        drain = getattr(self._converse, "drain", None)
        return int(drain()) if drain is not None else 0

    async def Converse(
        self, request_iterator: AsyncIterator[minmo_pb2.ClientEvent], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.ServerEvent]:
        if self._converse is None:
            raise _missing("Converse")
        first = await first_within(request_iterator, self._first_event_seconds, "the `session` event")
        async with self._admission.session(current_tenant()):
            async for event in self._converse.converse(prepend(first, request_iterator), context):
                yield event

    async def Transcribe(
        self, request_iterator: AsyncIterator[minmo_pb2.TranscribeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.TranscribeResponse]:
        if self._transcribe is None:
            raise _missing("Transcribe")
        tenant = current_tenant()
        first = await first_within(request_iterator, self._first_event_seconds, "the `config` message")
        async with self._admission.session(tenant):
            requests = _metered_transcription(prepend(first, request_iterator), self._admission, tenant)
            async for response in self._transcribe.transcribe(requests, context):
                yield response

    async def Synthesize(
        self, request: minmo_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.SynthesizeResponse]:
        if self._synthesize is None:
            raise _missing("Synthesize")
        tenant = current_tenant()
        async with self._admission.session(tenant):
            # The most this text can make is counted before any audio exists: concurrent syntheses of one
            # tenant cannot all pass a nearly used-up minute. What was not made is given back at the end.
            reserved_s = self._synthesize.max_audio_seconds(request)
            reservation = await self._admission.reserve_audio(tenant, reserved_s)
            produced_s = 0.0
            try:
                async for response in self._synthesize.synthesize(request, context):
                    produced_s += len(response.audio) / _SYNTHESIZED_BYTES_PER_SECOND
                    yield response
            finally:
                await self._admission.refund_audio(reservation, reserved_s - produced_s)

    async def GetSession(
        self, request: minmo_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> minmo_pb2.Session:
        if self._sessions is None:
            raise _missing("GetSession")
        return await self._sessions.get(checked_session_id(request.session_id))

    async def DeleteSession(
        self, request: minmo_pb2.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> minmo_pb2.DeleteSessionResponse:
        if self._sessions is None:
            raise _missing("DeleteSession")
        await self._sessions.delete(checked_session_id(request.session_id))
        return minmo_pb2.DeleteSessionResponse()
