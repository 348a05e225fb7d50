"""The orchestrator's in-pod TLS health probes, run for real against a gRPC server with TLS.

The kubelet's own gRPC probe speaks plaintext only, so with tls.enabled the chart probes from inside the
pod with a short script. This runs those exact rendered scripts (readiness asks `minmo.v1.MinMo`, liveness
`minmo.liveness`) against a real grpc server serving the standard health service over TLS (and mutual
TLS), with a certificate shaped like cert-manager's Secret.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import helm_python as helm
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from orchestrator.devstack.triton_launcher import free_port
from tests.helm.chart_render import render

SERVICE_DNS = "minmo-serve-orchestrator.voice.svc"
TLS_DIR_IN_POD = "/etc/minmo/tls/"


def write_cert_manager_secret(directory: Path) -> None:
    """ca.crt, tls.crt, tls.key as a cert-manager CA Issuer writes them: one cert for server and client auth."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minmo test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVICE_DNS)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVICE_DNS)]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    write_cert_manager_secret(tmp_path)
    return tmp_path


def serve_health(tls_dir: Path, *, client_auth: bool) -> tuple[grpc.Server, health.HealthServicer, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [((tls_dir / "tls.key").read_bytes(), (tls_dir / "tls.crt").read_bytes())],
        root_certificates=(tls_dir / "ca.crt").read_bytes() if client_auth else None,
        require_client_auth=client_auth,
    )
    port = free_port()
    server.add_secure_port(f"127.0.0.1:{port}", credentials)
    server.start()
    return server, servicer, port


def probe_command(
    chart: helm.Chart, *, client_auth: bool, tls_dir: Path, port: int, probe: str = "readinessProbe"
) -> list[str]:
    values = {"tls": {"enabled": True, "existingSecret": "minmo-tls", "clientAuth": client_auth}}
    deployment = render(chart, values).find("Deployment", "minmo-serve-orchestrator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container[probe]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    assert TLS_DIR_IN_POD in command[2] and "localhost:50051" in command[2]
    # Only where the files live and which port differ from the pod; the script itself runs unchanged.
    script = command[2].replace(TLS_DIR_IN_POD, f"{tls_dir}/").replace("localhost:50051", f"localhost:{port}")
    return [sys.executable, "-c", script]


@pytest.fixture(params=[False, True], ids=["tls", "mutual-tls"])
def client_auth(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def running(tls_dir: Path, client_auth: bool) -> Iterator[tuple[health.HealthServicer, int]]:
    server, servicer, port = serve_health(tls_dir, client_auth=client_auth)
    try:
        yield servicer, port
    finally:
        server.stop(grace=None)


def run_probe(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_each_probe_asks_its_own_service_and_fails_when_it_is_not_serving(
    chart: helm.Chart, tls_dir: Path, client_auth: bool, running: tuple[health.HealthServicer, int]
) -> None:
    servicer, port = running
    readiness = probe_command(chart, client_auth=client_auth, tls_dir=tls_dir, port=port)
    liveness = probe_command(chart, client_auth=client_auth, tls_dir=tls_dir, port=port, probe="livenessProbe")
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    servicer.set("minmo.v1.MinMo", serving)
    servicer.set("minmo.liveness", serving)
    passed = run_probe(readiness)
    assert passed.returncode == 0, passed.stderr
    assert run_probe(liveness).returncode == 0
    # Redis restarting: unready, still live (the kubelet must not restart the process).
    servicer.set("minmo.v1.MinMo", not_serving)
    assert (run_probe(readiness).returncode, run_probe(liveness).returncode) == (1, 0)
    servicer.set("minmo.liveness", not_serving)
    assert run_probe(liveness).returncode == 1


def test_probe_fails_against_a_server_with_a_certificate_from_another_ca(
    chart: helm.Chart, tmp_path: Path, client_auth: bool
) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    write_cert_manager_secret(ours)
    write_cert_manager_secret(theirs)
    server, servicer, port = serve_health(theirs, client_auth=client_auth)
    try:
        servicer.set("minmo.v1.MinMo", health_pb2.HealthCheckResponse.SERVING)
        assert run_probe(probe_command(chart, client_auth=client_auth, tls_dir=ours, port=port)).returncode != 0
    finally:
        server.stop(grace=None)
