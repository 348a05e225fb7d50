"""The servicer ``minmo serve`` builds (``orchestrator.server.wiring``) has every handler: no method is UNIMPLEMENTED.

Built from real shared clients (Redis at 127.0.0.1:6379; a Triton client to a port nothing listens on,
which no call below reaches) and served over loopback gRPC: each method answers its own handler's
validation error, which a servicer missing that handler could not (it answers UNIMPLEMENTED).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
import redis.asyncio
from grpc_health.v1 import health
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.server.app import build_server
from orchestrator.server.contracts import ServerDeps, ServeSettings
from orchestrator.server.wiring import build_servicer
from orchestrator.triton.client import TritonModels

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def wired() -> AsyncIterator[minmo_pb2_grpc.MinMoStub]:
    redis_client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
    triton = TritonModels(f"127.0.0.1:{free_port()}", deadline_seconds=2.0)
    servicer = build_servicer(ServerDeps(settings=ServeSettings(), triton=triton, redis=redis_client))
    port = free_port()
    server = build_server(servicer, port=port, health_servicer=health.aio.HealthServicer(), host="127.0.0.1")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield minmo_pb2_grpc.MinMoStub(channel)
    finally:
        await channel.close()
        await server.stop(None)
        await triton.close()
        await redis_client.aclose()


async def _status(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if isinstance(call, grpc.aio.UnaryStreamCall | grpc.aio.StreamStreamCall):
            async for _ in call:
                pass
        else:
            await call  # type: ignore[misc]
    return info.value.code(), info.value.details() or ""


async def test_every_method_reaches_its_handler(wired: minmo_pb2_grpc.MinMoStub) -> None:
    unknown = uuid.uuid4().hex
    answers = {
        "GetSession": await _status(wired.GetSession(minmo_pb2.GetSessionRequest(session_id=unknown), timeout=5)),
        "DeleteSession": await _status(
            wired.DeleteSession(minmo_pb2.DeleteSessionRequest(session_id=unknown), timeout=5)
        ),
        "Converse": await _status(wired.Converse(iter([minmo_pb2.ClientEvent()]), timeout=5)),
        "Transcribe": await _status(
            wired.Transcribe(iter([minmo_pb2.TranscribeRequest(audio=minmo_pb2.AudioChunk(data=b"\0\0"))]), timeout=5)
        ),
        "Synthesize": await _status(wired.Synthesize(minmo_pb2.SynthesizeRequest(text=" "), timeout=5)),
    }
    assert answers["GetSession"][0] == grpc.StatusCode.NOT_FOUND
    assert answers["DeleteSession"][0] == grpc.StatusCode.NOT_FOUND
    assert answers["Converse"] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the first Converse event must be `session` (a SessionConfig or a resume_token)",
    )
    assert answers["Transcribe"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert answers["Transcribe"][1].startswith("the first Transcribe message must be `config`")
    assert answers["Synthesize"] == (grpc.StatusCode.INVALID_ARGUMENT, "text is empty; send the text to speak")
