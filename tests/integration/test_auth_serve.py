"""``minmo serve`` as its own process with TLS and API keys from its flags: the contract the chart uses."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from minmo.v1 import minmo_pb2, minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from tests.integration.auth_support import write_api_keys
from tests.integration.pki import TestCA

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_until_serving(channel: grpc.Channel, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "minmo serve exited:\n" + log.read_text()[-3000:]
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    pytest.fail("minmo serve was not SERVING within 90 s:\n" + log.read_text()[-3000:])


def test_minmo_serve_with_tls_and_api_keys(triton: TritonProcess, tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    cert = ca.issue("orchestrator", server=True, cert_path=tmp_path / "tls.crt", key_path=tmp_path / "tls.key")
    keys = write_api_keys(tmp_path / "keys.json", {"acme-key": "acme"})
    port = free_port()
    log = tmp_path / "orchestrator.log"
    command = [
        sys.executable, "-m", "orchestrator.cli", "serve", f"--port={port}", "--host=127.0.0.1",
        f"--triton={triton.grpc_url}", f"--tls-cert={cert.cert}", f"--tls-key={cert.key}",
        "--auth=api-keys", f"--api-keys-file={keys}", "--tenant-max-sessions=4",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca.pem)) as channel:
            wait_until_serving(channel, process, log)  # health: over TLS, without a token
            api = minmo_pb2_grpc.MinMoStub(channel)
            request = minmo_pb2.GetSessionRequest(session_id="0" * 32)
            with pytest.raises(grpc.RpcError) as anonymous:
                api.GetSession(request, timeout=5)
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as unknown:
                api.GetSession(request, timeout=5, metadata=[("authorization", "Bearer acme-key")])
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND  # authenticated, and the id is unknown
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "(TLS, auth api-keys;" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
