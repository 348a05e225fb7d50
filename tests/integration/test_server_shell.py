"""The orchestrator's gRPC shell over real loopback gRPC: health, reflection, error mapping, UNIMPLEMENTED.

Health is judged against the real Triton of the session fixture and the real Redis; the error mapping
uses a tiny servicer that raises each domain error, so what is tested is what a client sees.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
import redis.asyncio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator import errors
from orchestrator.converse.settings import SessionSettings
from orchestrator.devstack.orchestrator_process import (
    OrchestratorProcess,
    health_status,
    start_orchestrator,
    wait_until_serving,
)
from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from orchestrator.server.app import ServeError, build_server
from orchestrator.server.health import ReadinessMonitor, not_serving_until_checked, redis_probe, triton_probe
from orchestrator.server.servicer import MinMoServicer
from orchestrator.server.sessions import StoreSessionReader
from orchestrator.state.store import SessionStore
from orchestrator.triton.client import TritonModels
from orchestrator.triton.errors import TritonUnavailableError
from tests.integration.helpers import delete_matching

pytestmark = [pytest.mark.integration]

REDIS_URL = "redis://127.0.0.1:6379/0"

DOMAIN_ERRORS = {
    cls.__name__: cls
    for cls in (
        errors.InvalidArgument,
        errors.NotFound,
        errors.ResourceExhausted,
        errors.Unavailable,
        errors.FailedPrecondition,
        errors.PermissionDenied,
    )
}


class RaisingServicer(minmo_pb2_grpc.MinMoServicer):
    """Raises the domain error its request names (session id, text or first event's instructions)."""

    @staticmethod
    def _raise(name: str) -> None:
        if name == "ValueError":
            raise ValueError("a bug in a handler")
        if name == "TritonUnavailable":
            raise TritonUnavailableError("backbone", "failed to connect to all addresses")
        if name in DOMAIN_ERRORS:
            raise DOMAIN_ERRORS[name](f"{name} raised on purpose: fix the test request")

    async def GetSession(self, request: minmo_pb2.GetSessionRequest, context: grpc.aio.ServicerContext):
        self._raise(request.session_id)
        return minmo_pb2.Session(session_id=request.session_id)

    async def DeleteSession(self, request: minmo_pb2.DeleteSessionRequest, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.ALREADY_EXISTS, "aborted by the handler itself")

    async def Synthesize(self, request: minmo_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext):
        yield minmo_pb2.SynthesizeResponse(audio=b"\0\0", sequence=0)
        self._raise(request.text)

    async def Converse(self, request_iterator: AsyncIterator[minmo_pb2.ClientEvent], context):
        async for event in request_iterator:
            yield minmo_pb2.ServerEvent(session_started=minmo_pb2.SessionStarted(session_id="s"))
            self._raise(event.session.config.instructions)

    async def Transcribe(self, request_iterator, context):
        raise NotImplementedError  # not exercised
        yield


@pytest.fixture
async def serve_in_process():
    """Start a server around a servicer on a free loopback port; yields (channel, health servicer)."""
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(servicer: minmo_pb2_grpc.MinMoServicer):
        health_servicer = health.aio.HealthServicer()
        await not_serving_until_checked(health_servicer)
        port = free_port()
        server = build_server(servicer, port=port, health_servicer=health_servicer, host="127.0.0.1")
        await server.start()
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return channel, health_servicer

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


async def health_of(channel: grpc.aio.Channel, service: str) -> str:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def closed_port() -> int:
    return free_port()  # nothing listens on a port the OS just handed out and took back


# ---- health ----------------------------------------------------------------------------------------------------


def start_serving(triton: TritonProcess, run_dir: Path) -> OrchestratorProcess:
    """``minmo serve`` as its own process, against the session's Triton and the real Redis, once SERVING."""
    orchestrator = start_orchestrator(run_dir, port=free_port(), triton_url=triton.grpc_url, redis_url=REDIS_URL)
    try:
        wait_until_serving(orchestrator, timeout=60)
    except Exception:
        orchestrator.process.kill()
        raise
    return orchestrator


@pytest.fixture
def orchestrator_process(triton: TritonProcess, tmp_path: Path) -> Iterator[OrchestratorProcess]:
    orchestrator = start_serving(triton, tmp_path)
    yield orchestrator
    if orchestrator.process.poll() is None:
        orchestrator.process.kill()
        orchestrator.process.wait(timeout=10)


@pytest.mark.slow
def test_minmo_serve_is_serving_with_triton_and_redis(orchestrator_process: OrchestratorProcess) -> None:
    assert health_status(orchestrator_process.address) == "SERVING"
    with grpc.insecure_channel(orchestrator_process.address) as channel:
        overall = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert overall.status == health_pb2.HealthCheckResponse.SERVING


async def test_not_serving_while_triton_is_unreachable(serve_in_process) -> None:
    channel, health_servicer = await serve_in_process(MinMoServicer())
    triton = TritonModels(f"127.0.0.1:{closed_port()}")
    redis_client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        monitor = ReadinessMonitor(health_servicer, [triton_probe(triton), redis_probe(redis_client)])
        reason = await monitor.check()
    finally:
        await triton.close()
        await redis_client.aclose()
    assert reason is not None and "Triton" in reason and "Redis" not in reason
    assert await health_of(channel, "") == "NOT_SERVING"
    assert await health_of(channel, "minmo.v1.MinMo") == "NOT_SERVING"


async def test_not_serving_while_redis_is_unreachable(serve_in_process, triton: TritonProcess) -> None:
    channel, health_servicer = await serve_in_process(MinMoServicer())
    triton_models = TritonModels(triton.grpc_url)
    redis_client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1)
    try:
        monitor = ReadinessMonitor(health_servicer, [triton_probe(triton_models), redis_probe(redis_client)])
        reason = await monitor.check()
    finally:
        await triton_models.close()
        await redis_client.aclose()
    assert reason is not None and reason.startswith("Redis does not answer")
    assert await health_of(channel, "minmo.v1.MinMo") == "NOT_SERVING"


@pytest.mark.slow
def test_sigterm_stops_minmo_serve_gracefully(orchestrator_process: OrchestratorProcess) -> None:
    orchestrator_process.process.send_signal(signal.SIGTERM)
    try:
        code = orchestrator_process.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("minmo serve did not stop within 20 s of SIGTERM:\n" + orchestrator_process.log_tail())
    assert code == 0, orchestrator_process.log_tail()
    log = Path(orchestrator_process.log_path).read_text()
    assert "stopping: refusing new calls" in log and "stopped" in log


async def test_a_port_another_server_holds_is_refused_with_a_clear_error() -> None:
    port = free_port()
    first = build_server(MinMoServicer(), port=port, health_servicer=health.aio.HealthServicer(), host="127.0.0.1")
    await first.start()
    try:
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}.*port taken"):
            build_server(MinMoServicer(), port=port, health_servicer=health.aio.HealthServicer(), host="127.0.0.1")
    finally:
        await first.stop(None)


# ---- reflection ------------------------------------------------------------------------------------------------


async def test_reflection_lists_the_minmo_service(serve_in_process) -> None:
    channel, _ = await serve_in_process(MinMoServicer())
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="minmo.v1.MinMo"),
    ]
    replies = [reply async for reply in stub.ServerReflectionInfo(iter(requests), timeout=5)]
    names = {service.name for service in replies[0].list_services_response.service}
    assert {"minmo.v1.MinMo", "grpc.health.v1.Health"} <= names
    assert replies[1].file_descriptor_response.file_descriptor_proto, "no descriptor for minmo.v1.MinMo"


# ---- error mapping ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOMAIN_ERRORS))
async def test_domain_errors_map_to_their_status_in_unary_and_streaming_calls(serve_in_process, name: str) -> None:
    channel, _ = await serve_in_process(RaisingServicer())
    stub = minmo_pb2_grpc.MinMoStub(channel)
    expected = DOMAIN_ERRORS[name].code
    message = f"{name} raised on purpose: fix the test request"

    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await stub.GetSession(minmo_pb2.GetSessionRequest(session_id=name), timeout=5)
    assert (unary.value.code(), unary.value.details()) == (expected, message)

    received = []
    with pytest.raises(grpc.aio.AioRpcError) as server_stream:
        async for response in stub.Synthesize(minmo_pb2.SynthesizeRequest(text=name), timeout=5):
            received.append(response)
    assert (server_stream.value.code(), server_stream.value.details()) == (expected, message)
    assert len(received) == 1, "what was sent before the error reaches the client"

    first = minmo_pb2.ClientEvent(session=minmo_pb2.SessionStart(config=minmo_pb2.SessionConfig(instructions=name)))
    with pytest.raises(grpc.aio.AioRpcError) as bidi:
        async for _ in stub.Converse(iter([first]), timeout=5):
            pass
    assert (bidi.value.code(), bidi.value.details()) == (expected, message)


async def test_triton_unavailable_maps_to_unavailable(serve_in_process) -> None:
    channel, _ = await serve_in_process(RaisingServicer())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await minmo_pb2_grpc.MinMoStub(channel).GetSession(minmo_pb2.GetSessionRequest(session_id="TritonUnavailable"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "model server is unavailable" in info.value.details() and "retry" in info.value.details()


async def test_an_unexpected_exception_is_internal_and_logged_with_its_traceback(
    serve_in_process, caplog: pytest.LogCaptureFixture
) -> None:
    channel, _ = await serve_in_process(RaisingServicer())
    caplog.set_level(logging.ERROR, logger="orchestrator.server.interceptor")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await minmo_pb2_grpc.MinMoStub(channel).GetSession(minmo_pb2.GetSessionRequest(session_id="ValueError"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "ValueError" in info.value.details() and "a bug in a handler" not in info.value.details()
    logged = [record for record in caplog.records if record.exc_info]
    assert logged, "the traceback must be in the log"
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is ValueError
    assert "/minmo.v1.MinMo/GetSession" in logged[0].getMessage()


async def test_a_handlers_own_abort_is_kept(serve_in_process) -> None:
    channel, _ = await serve_in_process(RaisingServicer())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await minmo_pb2_grpc.MinMoStub(channel).DeleteSession(minmo_pb2.DeleteSessionRequest(session_id="x"))
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "aborted by the handler itself",
    )


# ---- the MinMo servicer ----------------------------------------------------------------------------------------


async def test_a_missing_handler_answers_unimplemented(serve_in_process) -> None:
    channel, _ = await serve_in_process(MinMoServicer())
    stub = minmo_pb2_grpc.MinMoStub(channel)
    calls = {
        "Converse": lambda: _drain(stub.Converse(iter([minmo_pb2.ClientEvent()]), timeout=5)),
        "Transcribe": lambda: _drain(stub.Transcribe(iter([minmo_pb2.TranscribeRequest()]), timeout=5)),
        "Synthesize": lambda: _drain(stub.Synthesize(minmo_pb2.SynthesizeRequest(text="hi"), timeout=5)),
        "GetSession": lambda: stub.GetSession(minmo_pb2.GetSessionRequest(session_id="s"), timeout=5),
        "DeleteSession": lambda: stub.DeleteSession(minmo_pb2.DeleteSessionRequest(session_id="s"), timeout=5),
    }
    for method, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call()
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
        assert info.value.details().startswith(f"{method} is not available"), info.value.details()


async def test_sessions_are_read_and_deleted_through_the_redis_store(serve_in_process) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"test:{uuid.uuid4().hex}:minmo:"
    store = SessionStore(client, prefix=prefix, ttl_seconds=60)
    try:
        record, _ = await store.create(SessionSettings(instructions="Be brief.", turn_detection="client").to_dict())
        channel, _ = await serve_in_process(MinMoServicer(sessions=StoreSessionReader(store)))
        stub = minmo_pb2_grpc.MinMoStub(channel)
        session = await stub.GetSession(minmo_pb2.GetSessionRequest(session_id=record.session_id), timeout=5)
        assert session.session_id == record.session_id and not session.active and not session.turns
        assert session.config.instructions == "Be brief."
        assert session.config.turn_detection == minmo_pb2.TURN_DETECTION_CLIENT

        await stub.DeleteSession(minmo_pb2.DeleteSessionRequest(session_id=record.session_id), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.GetSession(minmo_pb2.GetSessionRequest(session_id=record.session_id), timeout=5)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND and "start a new session" in gone.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await stub.DeleteSession(minmo_pb2.DeleteSessionRequest(), timeout=5)
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "session_id is empty" in empty.value.details()
    finally:
        await delete_matching(client, f"{prefix}*")
        await client.aclose()


async def _drain(call: grpc.aio.Call) -> None:
    async for _ in call:  # type: ignore[attr-defined]
        pass
