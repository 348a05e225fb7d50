"""Credentials for the orchestrator's dependencies: a password-protected Redis, and TLS options that
must come in pairs. The Redis is a private ``redis-server --requirepass`` started (and stopped) here."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.security.verifiers import AuthConfigError
from orchestrator.server.contracts import ServeSettings
from orchestrator.server.health import redis_probe
from orchestrator.server.security_config import build_redis_client, build_triton_models
from orchestrator.state.store import SessionStore

pytestmark = [pytest.mark.integration]

PASSWORD = "s3cret-for-the-test"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[int]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, password=PASSWORD, socket_connect_timeout=0.5).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_redis_password_comes_from_a_file(private_redis: int, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{private_redis}/0"
    without = build_redis_client(ServeSettings(redis_url=url))
    reason = await redis_probe(without)()
    await without.aclose()
    assert reason is not None and "Authentication" in reason  # health would say NOT_SERVING, and why

    password_file = tmp_path / "redis-password"
    password_file.write_text(PASSWORD + "\n")  # a trailing newline, as `echo` or a secret mount leaves it
    client = build_redis_client(ServeSettings(redis_url=url, redis_password_file=password_file))
    try:
        assert await redis_probe(client)() is None
        store = SessionStore(client, prefix="test:")
        record, token = await store.create({"instructions": "x"}, tenant="acme")
        assert await store.resolve(token, tenant="acme") == record.session_id
    finally:
        await client.aclose()


def test_tls_options_for_dependencies_are_checked(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="--redis-ca needs TLS"):
        build_redis_client(ServeSettings(redis_ca=tmp_path / "ca.pem"))
    with pytest.raises(AuthConfigError, match="cannot read the Redis password file"):
        build_redis_client(ServeSettings(redis_password_file=tmp_path / "absent"))
    with pytest.raises(AuthConfigError, match="--triton-root-certs needs --triton-ssl"):
        build_triton_models(ServeSettings(triton_root_certs=tmp_path / "ca.pem"))
    tls = build_redis_client(
        ServeSettings(redis_url="redis://example:6380/0", redis_tls=True, redis_ca=tmp_path / "ca")
    )
    kwargs = tls.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == str(tmp_path / "ca") and kwargs["ssl_cert_reqs"] == "required"
    assert tls.connection_pool.connection_class.__name__ == "SSLConnection"
