"""TLS and mutual TLS on the orchestrator's port, with certificate rotation without a restart.

The server is the real ``build_server`` (health, reflection, MinMo on one port) over loopback; the
certificates come from a throwaway CA made in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.security.tls import TlsFiles
from orchestrator.server.app import ServeError, build_server, serve
from orchestrator.server.contracts import ServeSettings
from orchestrator.server.health import not_serving_until_checked
from orchestrator.server.servicer import MinMoServicer
from tests.integration.pki import Issued, TestCA

pytestmark = [pytest.mark.integration]

StartServer = Callable[[TlsFiles], Awaitable[int]]


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def server_cert(ca: TestCA, tmp_path: Path) -> Issued:
    return ca.issue("orchestrator-1", server=True, cert_path=tmp_path / "tls.crt", key_path=tmp_path / "tls.key")


@pytest.fixture
async def start_tls_server() -> AsyncIterator[StartServer]:
    servers: list[grpc.aio.Server] = []

    async def start(tls: TlsFiles) -> int:
        health_servicer = health.aio.HealthServicer()
        await not_serving_until_checked(health_servicer)
        port = free_port()
        server = build_server(MinMoServicer(), port=port, health_servicer=health_servicer, host="127.0.0.1", tls=tls)
        await server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        await server.stop(None)


async def health_check(channel: grpc.aio.Channel) -> str:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def peer_certificate(port: int, ca: TestCA, client: Issued | None = None) -> x509.Certificate:
    """The certificate the server presents to a fresh TLS handshake (a new connection)."""
    context = ssl.create_default_context(cafile=str(ca.pem_path))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def test_tls_clients_connect_and_plaintext_clients_do_not(
    start_tls_server: StartServer, server_cert: Issued, ca: TestCA
) -> None:
    port = await start_tls_server(TlsFiles(server_cert.cert, server_cert.key))
    async with grpc.aio.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca.pem)) as channel:
        assert await health_check(channel) == "NOT_SERVING"  # health answers over TLS on the same port
        with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
            await minmo_pb2_grpc.MinMoStub(channel).GetSession(minmo_pb2.GetSessionRequest(session_id="s"), timeout=5)
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED  # the API is reached, too
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plaintext:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_check(plaintext)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    other_ca = TestCA(server_cert.cert.parent, name="someone else")
    async with grpc.aio.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(other_ca.pem)) as untrusting:
        with pytest.raises(grpc.aio.AioRpcError) as unverified:
            await health_check(untrusting)
    assert unverified.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(
    start_tls_server: StartServer, server_cert: Issued, ca: TestCA, tmp_path: Path
) -> None:
    port = await start_tls_server(TlsFiles(server_cert.cert, server_cert.key, client_ca=ca.pem_path))
    client = ca.issue("tenant-acme", server=False, cert_path=tmp_path / "client.crt", key_path=tmp_path / "client.key")
    with_cert = grpc.ssl_channel_credentials(ca.pem, client.key.read_bytes(), client.cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{port}", with_cert) as channel:
        assert await health_check(channel) == "NOT_SERVING"
    async with grpc.aio.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca.pem)) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_check(anonymous)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    stranger_ca = TestCA(tmp_path, name="stranger CA")
    stranger = stranger_ca.issue("x", server=False, cert_path=tmp_path / "s.crt", key_path=tmp_path / "s.key")
    foreign = grpc.ssl_channel_credentials(ca.pem, stranger.key.read_bytes(), stranger.cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{port}", foreign) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_check(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_rotated_certificate_is_served_to_new_connections_without_a_restart(
    start_tls_server: StartServer, server_cert: Issued, ca: TestCA, tmp_path: Path
) -> None:
    port = await start_tls_server(TlsFiles(server_cert.cert, server_cert.key))
    before = await asyncio.to_thread(peer_certificate, port, ca)
    assert before.serial_number == server_cert.serial
    async with grpc.aio.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca.pem)) as old_channel:
        assert await health_check(old_channel) == "NOT_SERVING"
        rotated = ca.issue("orchestrator-2", server=True, cert_path=server_cert.cert, key_path=server_cert.key)
        after = await asyncio.to_thread(peer_certificate, port, ca)
        assert after.serial_number == rotated.serial != server_cert.serial
        assert after.subject.rfc4514_string() == "CN=orchestrator-2"
        assert await health_check(old_channel) == "NOT_SERVING"  # the open connection carries on
    async with grpc.aio.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca.pem)) as new_channel:
        assert await health_check(new_channel) == "NOT_SERVING"
    # A rotation caught half-written (the key not yet there) keeps the last good certificate.
    server_cert.key.write_text("")
    ca.issue("orchestrator-3", server=True, cert_path=server_cert.cert, key_path=tmp_path / "elsewhere.key")
    assert (await asyncio.to_thread(peer_certificate, port, ca)).serial_number == rotated.serial


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"tls_cert": Path("/nonexistent/tls.crt")}, "both --tls-cert and --tls-key"),
        ({"tls_client_ca": Path("/nonexistent/ca.pem")}, "--tls-client-ca needs --tls-cert"),
        ({"tls_cert": Path("/nonexistent/tls.crt"), "tls_key": Path("/x.key")}, "/nonexistent/tls.crt"),
        ({"auth": "api-keys"}, "--auth api-keys needs --api-keys-file"),
        ({"auth": "jwt", "jwt_issuer": "i"}, "--auth jwt needs"),
    ],
)
async def test_minmo_serve_refuses_to_start_on_a_bad_security_config(settings: dict, fragment: str) -> None:
    with pytest.raises(ServeError, match=fragment):
        await serve(ServeSettings(port=free_port(), **settings))
