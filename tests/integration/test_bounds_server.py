"""Issue 13 at the server shell (no Triton needed): the cap on concurrent calls, and identity.

The server is the production assembly (``build_server`` with the settings' options and the auth
interceptor), over real gRPC on loopback; a JWKS endpoint is a real HTTP server on loopback; mutual
TLS uses certificates from a test CA. Sessions are read from the shared Redis under a prefix of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import redis.asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.security.identities import CertificateTenants
from orchestrator.security.interceptor import AuthInterceptor
from orchestrator.security.tls import TlsFiles
from orchestrator.security.verifiers import (
    ApiKeyVerifier,
    AuthConfigError,
    AuthenticationFailed,
    JwtVerifier,
    VerifierUnavailable,
    jwks_key_source,
)
from orchestrator.server.app import build_server
from orchestrator.server.contracts import ServeSettings
from orchestrator.server.health import not_serving_until_checked
from orchestrator.server.servicer import MinMoServicer
from orchestrator.server.sessions import StoreSessionReader
from orchestrator.state.store import SessionStore
from tests.faults.tcp_proxy import FaultyTcpProxy
from tests.integration.helpers import REDIS_URL, delete_matching
from tests.integration.pki import TestCA

pytestmark = pytest.mark.integration
ISSUER, AUDIENCE = "https://id.test", "minmo"
UNKNOWN_ID = "0" * 32


@contextlib.asynccontextmanager
async def serving(
    *, settings: ServeSettings | None = None, auth: AuthInterceptor | None = None, tls: TlsFiles | None = None
) -> AsyncIterator[tuple[int, SessionStore]]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"test-bounds-server-{os.urandom(4).hex()}:"
    store = SessionStore(client, prefix=prefix)
    health_servicer = health.aio.HealthServicer()
    await not_serving_until_checked(health_servicer)
    port = free_port()
    server = build_server(
        MinMoServicer(sessions=StoreSessionReader(store)),
        port=port,
        health_servicer=health_servicer,
        host="127.0.0.1",
        tls=tls,
        settings=settings,
        auth=auth,
    )
    await server.start()
    try:
        yield port, store
    finally:
        await server.stop(None)
        await delete_matching(client, f"{prefix}*")
        await client.aclose()


async def _get(channel: grpc.aio.Channel, metadata: Any = None) -> grpc.StatusCode:
    try:
        await minmo_pb2_grpc.MinMoStub(channel).GetSession(
            pb.GetSessionRequest(session_id=UNKNOWN_ID), metadata=metadata, timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# --- 2. a cap on concurrent calls, health Watch streams included ---------------------------------------------------


async def test_watch_streams_count_against_the_cap_on_concurrent_calls() -> None:
    async with (
        serving(settings=ServeSettings(max_concurrent_rpcs=3)) as (port, _),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(3)]
        for watch in watches:
            await watch.read()  # each Watch is live and holds a slot
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for watch in watches:
            watch.cancel()
        await asyncio.sleep(0.3)
        await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)  # slots come back


class _Endless:
    """A Transcribe handler that answers each message and notes how its call ended."""

    def __init__(self) -> None:
        self.ended: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def transcribe(self, requests: AsyncIterator[pb.TranscribeRequest], context: object) -> AsyncIterator[Any]:
        try:
            async for _ in requests:
                yield pb.TranscribeResponse(text_delta="x")
        finally:
            if not self.ended.done():
                self.ended.set_result(time.monotonic())


async def test_keepalive_ends_the_call_of_a_client_whose_network_stalls_silently() -> None:
    handler = _Endless()
    health_servicer = health.aio.HealthServicer()
    port = free_port()
    settings = ServeSettings(keepalive_seconds=1, keepalive_timeout_seconds=1)
    server = build_server(
        MinMoServicer(transcribe=handler),
        port=port,
        health_servicer=health_servicer,
        host="127.0.0.1",
        settings=settings,
    )
    await server.start()
    path = FaultyTcpProxy("127.0.0.1", port).start()
    outgoing: asyncio.Queue[pb.TranscribeRequest] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.TranscribeRequest]:
        while True:
            yield await outgoing.get()

    try:
        async with grpc.aio.insecure_channel(path.address) as channel:
            call = minmo_pb2_grpc.MinMoStub(channel).Transcribe(requests())
            outgoing.put_nowait(pb.TranscribeRequest(config=pb.TranscribeConfig()))
            await call.read()
            path.stall()  # packets stop; nothing closes
            stalled = time.monotonic()
            ended = await asyncio.wait_for(handler.ended, 15)
            assert ended - stalled < 5, f"the stalled call lived {ended - stalled:.1f} s"
            call.cancel()
    finally:
        path.pass_through()
        path.stop()
        await server.stop(None)


# --- 7. identity --------------------------------------------------------------------------------------------------


class Jwks:
    """A JWKS endpoint on loopback whose key set a test can rotate."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/jwks.json"

    def publish(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.keys = []
        for kid, key in keys:
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            self.keys.append({**public, "kid": kid, "use": "sig", "alg": "RS256"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    endpoint = Jwks()
    yield endpoint
    endpoint.close()


def token(key: rsa.RSAPrivateKey, kid: str, **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "tenant": "acme"}
    body.update(claims)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


async def test_jwt_keys_come_from_jwks_by_kid_and_a_rotation_is_followed(jwks: Jwks) -> None:
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    jwks.publish(("k1", old))
    verifier = JwtVerifier(jwks_key_source(jwks.url, cooldown_seconds=0), issuer=ISSUER, audience=AUDIENCE)
    async with (
        serving(auth=AuthInterceptor(verifier, blocking=True)) as (port, _),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        bearer = [("authorization", f"Bearer {token(old, 'k1')}")]
        assert await _get(channel, bearer) == grpc.StatusCode.NOT_FOUND  # authenticated: the id is unknown
        jwks.publish(("k2", new))  # the provider rotates its key
        bearer = [("authorization", f"Bearer {token(new, 'k2')}")]
        assert await _get(channel, bearer) == grpc.StatusCode.NOT_FOUND  # an unknown kid fetches the set again
        stale = [("authorization", f"Bearer {token(old, 'k1')}")]
        assert await _get(channel, stale) == grpc.StatusCode.UNAUTHENTICATED  # the retired key is gone
        made_up = [("authorization", f"Bearer {token(new, 'k9')}")]
        assert await _get(channel, made_up) == grpc.StatusCode.UNAUTHENTICATED
    unreachable = JwtVerifier(jwks_key_source(f"http://127.0.0.1:{free_port()}/"), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(VerifierUnavailable):
        unreachable.verify(token(new, "k2"))


def test_jwts_are_bounded_in_lifetime_and_cannot_claim_the_default_tenant(jwks: Jwks) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish(("k", key))
    verifier = JwtVerifier(jwks_key_source(jwks.url), issuer=ISSUER, audience=AUDIENCE, max_lifetime_seconds=3600)
    now = int(time.time())
    assert verifier.verify(token(key, "k", exp=now + 3500)) == "acme"
    for claims, fragment in (
        ({"exp": now + 30 * 86400}, "lives longer"),
        ({"iat": None, "exp": now + 7200}, "lives longer"),
        ({"tenant": "default"}, "not a tenant this server accepts"),
        ({"tenant": "a:b"}, "not a tenant this server accepts"),
    ):
        body = {k: v for k, v in claims.items() if v is not None}
        raw = token(key, "k", **body)
        if claims.get("iat", 0) is None:
            raw = jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 7200, "tenant": "acme"},
                key,
                "RS256",
                headers={"kid": "k"},
            )
        with pytest.raises(AuthenticationFailed, match=fragment):
            verifier.verify(raw)


def _keys_file(path: Path, keys: dict[str, str]) -> Path:
    entries = [{"key_sha256": hashlib.sha256(k.encode()).hexdigest(), "tenant": t} for k, t in keys.items()]
    path.write_text(json.dumps({"keys": entries}))
    return path


async def test_api_keys_are_reread_when_the_file_changes_and_duplicates_are_refused(tmp_path: Path) -> None:
    path = _keys_file(tmp_path / "keys.json", {"key-one": "acme"})
    verifier = ApiKeyVerifier.from_file(path)
    async with (
        serving(auth=AuthInterceptor(verifier)) as (port, _),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        assert await _get(channel, [("authorization", "Bearer key-one")]) == grpc.StatusCode.NOT_FOUND
        twice = [("authorization", "Bearer key-one"), ("authorization", "Bearer key-one")]
        assert await _get(channel, twice) == grpc.StatusCode.UNAUTHENTICATED
        await asyncio.sleep(1.1)
        _keys_file(path, {"key-two": "acme"})  # key-one revoked, without a restart
        os.utime(path, (time.time() + 5, time.time() + 5))
        assert await _get(channel, [("authorization", "Bearer key-one")]) == grpc.StatusCode.UNAUTHENTICATED
        assert await _get(channel, [("authorization", "Bearer key-two")]) == grpc.StatusCode.NOT_FOUND
        await asyncio.sleep(1.1)
        path.write_text("{not json")  # a broken write keeps the keys in force
        os.utime(path, (time.time() + 10, time.time() + 10))
        assert await _get(channel, [("authorization", "Bearer key-two")]) == grpc.StatusCode.NOT_FOUND
    assert verifier.reloads == 1
    with pytest.raises(AuthConfigError, match="not `default`"):
        ApiKeyVerifier.from_file(_keys_file(tmp_path / "default.json", {"k": "default"}))


async def test_a_client_certificate_maps_to_a_tenant(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    server = ca.issue("orchestrator", server=True, cert_path=tmp_path / "tls.crt", key_path=tmp_path / "tls.key")
    mapped = ca.issue("client.acme.test", server=False, cert_path=tmp_path / "a.crt", key_path=tmp_path / "a.key")
    other = ca.issue("client.other.test", server=False, cert_path=tmp_path / "o.crt", key_path=tmp_path / "o.key")
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(json.dumps({"clients": [{"identity": "client.acme.test", "tenant": "acme"}]}))
    identity = CertificateTenants.from_file(tenants_file)
    tls = TlsFiles(server.cert, server.key, client_ca=ca.pem_path)
    async with serving(auth=AuthInterceptor(identity=identity), tls=tls) as (port, store):
        record, _ = await store.create({}, tenant="acme")
        foreign, _ = await store.create({}, tenant="globex")
        for issued, expected in ((mapped, grpc.StatusCode.OK), (other, grpc.StatusCode.UNAUTHENTICATED)):
            credentials = grpc.ssl_channel_credentials(ca.pem, issued.key.read_bytes(), issued.cert.read_bytes())
            async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
                stub = minmo_pb2_grpc.MinMoStub(channel)
                try:
                    await stub.GetSession(pb.GetSessionRequest(session_id=record.session_id), timeout=10)
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                assert code == expected, issued
                if expected == grpc.StatusCode.OK:  # the certificate's tenant, not any other
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await stub.GetSession(pb.GetSessionRequest(session_id=foreign.session_id), timeout=10)
                    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"clients": [{"identity": "x", "tenant": "default"}]}))
    with pytest.raises(AuthConfigError):
        CertificateTenants.from_file(bad)
