"""Token authentication over real loopback gRPC: what an unauthenticated, a wrongly and a rightly
authenticated client each see, on the API, on reflection and on health (which stays open)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.errors import ResourceExhausted
from orchestrator.security.verifiers import ApiKeyVerifier, JwtVerifier, Verifier
from orchestrator.server.app import build_server
from orchestrator.server.health import not_serving_until_checked
from orchestrator.server.servicer import MinMoServicer
from orchestrator.server.sessions import StoreSessionReader
from orchestrator.state.store import SessionStore
from tests.integration.auth_support import token_channel, write_api_keys
from tests.integration.helpers import temporary_store

pytestmark = [pytest.mark.integration]

HOW = "send gRPC metadata `authorization: Bearer <token>`"


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with temporary_store("auth") as sessions:
        yield sessions


async def start(servicer: minmo_pb2_grpc.MinMoServicer, verifier: Verifier) -> tuple[grpc.aio.Server, str]:
    health_servicer = health.aio.HealthServicer()
    await not_serving_until_checked(health_servicer)
    port = free_port()
    server = build_server(servicer, port=port, health_servicer=health_servicer, host="127.0.0.1", verifier=verifier)
    await server.start()
    return server, f"127.0.0.1:{port}"


async def get_session(channel: grpc.aio.Channel, session_id: str) -> minmo_pb2.Session:
    return await minmo_pb2_grpc.MinMoStub(channel).GetSession(
        minmo_pb2.GetSessionRequest(session_id=session_id), timeout=5
    )


async def failure(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value


async def list_services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        return [service.name for service in reply.list_services_response.service]
    return []


async def test_api_keys_guard_the_api_and_reflection_but_not_health(store: SessionStore, tmp_path: Path) -> None:
    verifier = ApiKeyVerifier.from_file(write_api_keys(tmp_path / "keys.json", {"acme-key-1": "acme"}))
    record, _ = await store.create({"instructions": "hi"}, tenant="acme")
    server, address = await start(MinMoServicer(sessions=StoreSessionReader(store)), verifier)
    try:
        async with token_channel(address, None) as anonymous:
            missing = await failure(get_session(anonymous, record.session_id))
            assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
            assert missing.details() == f"missing credentials: {HOW} (an API key or a JWT)"
            assert (await failure(list_services(anonymous))).code() == grpc.StatusCode.UNAUTHENTICATED
            # Kubernetes probes carry no token: health answers anyway.
            reply = await health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        async with token_channel(address, "acme-key-2") as wrong:
            refused = await failure(get_session(wrong, record.session_id))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            assert refused.details().startswith("the API key is not valid; " + HOW)
        async with token_channel(address, "acme-key-1") as acme:
            session = await get_session(acme, record.session_id)
            assert session.session_id == record.session_id and session.config.instructions == "hi"
            assert "minmo.v1.MinMo" in await list_services(acme)
    finally:
        await server.stop(None)


def es256_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key, key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()


async def test_jwts_authenticate_and_an_expired_one_says_so(store: SessionStore) -> None:
    key, public_pem = es256_pair()
    verifier = JwtVerifier(public_pem, issuer="https://id.test", audience="minmo")
    record, _ = await store.create({}, tenant="acme")
    server, address = await start(MinMoServicer(sessions=StoreSessionReader(store)), verifier)
    now = int(time.time())
    body = {"iss": "https://id.test", "aud": "minmo", "tenant": "acme", "exp": now + 60}
    try:
        async with token_channel(address, jwt.encode(body, key, algorithm="ES256")) as acme:
            assert (await get_session(acme, record.session_id)).session_id == record.session_id
        expired = jwt.encode({**body, "exp": now - 3600}, key, algorithm="ES256")
        async with token_channel(address, expired) as late:
            refused = await failure(get_session(late, record.session_id))
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused.details().startswith("the token has expired; get a new one; " + HOW)
        other_audience = jwt.encode({**body, "aud": "billing"}, key, algorithm="ES256")
        async with token_channel(address, other_audience) as misdirected:
            refused = await failure(get_session(misdirected, record.session_id))
        assert "audience is wrong; it must be 'minmo'" in refused.details()
    finally:
        await server.stop(None)


class LimitedServicer(minmo_pb2_grpc.MinMoServicer):
    """Answers GetSession with a limit error carrying a retry hint, as the limits do."""

    async def GetSession(self, request, context):
        raise ResourceExhausted("tenant 'acme' is over its limit; retry in 1.5 s", retry_after_ms=1500)


async def test_a_limit_answers_resource_exhausted_with_a_retry_hint_in_trailing_metadata(tmp_path: Path) -> None:
    verifier = ApiKeyVerifier.from_file(write_api_keys(tmp_path / "keys.json", {"k": "acme"}))
    server, address = await start(LimitedServicer(), verifier)
    try:
        async with token_channel(address, "k") as channel:
            error = await failure(get_session(channel, "s"))
    finally:
        await server.stop(None)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "tenant 'acme' is over its limit; retry in 1.5 s"
    assert dict(error.trailing_metadata() or ())["retry-after-ms"] == "1500"
