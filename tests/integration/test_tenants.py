"""Tenant isolation over the real API: a tenant can never read, delete or resume another tenant's
session, and the answer is the very one a session that does not exist gets (no existence leak)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from orchestrator.security.verifiers import ApiKeyVerifier
from orchestrator.server.app import build_server
from orchestrator.server.servicer import MinMoServicer
from orchestrator.server.sessions import StoreSessionReader
from orchestrator.state.store import SessionStore
from tests.integration.auth_support import token_channel, write_api_keys
from tests.integration.converse_client import ConverseClient
from tests.integration.helpers import temporary_store
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration]

KEYS = {"acme-key": "acme", "globex-key": "globex"}


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value


def answer(error: grpc.aio.AioRpcError, session_id: str) -> tuple[grpc.StatusCode, str]:
    """What the client sees, with the id it asked for masked (each asked for a different one)."""
    return error.code(), error.details().replace(session_id, "<id>")


async def open_session(channel: grpc.aio.Channel, start: pb.SessionStart) -> ConverseClient:
    client = ConverseClient(channel)
    client.send(session=start)
    return client


async def refused_resume(channel: grpc.aio.Channel, token: str) -> tuple[grpc.StatusCode, str]:
    client = await open_session(channel, pb.SessionStart(resume_token=token))
    await client.finished()
    await client.close()  # ends the request stream the refused call left waiting
    assert client.error is not None and not client.events
    return client.error.code(), client.error.details()


@pytest.mark.slow
async def test_a_tenant_cannot_read_delete_or_resume_another_tenants_session(
    triton: TritonProcess, tmp_path: Path
) -> None:
    verifier = ApiKeyVerifier.from_file(write_api_keys(tmp_path / "keys.json", KEYS))
    async with (
        running_orchestrator(triton.grpc_url, verifier=verifier) as orch,
        token_channel(orch.address, "acme-key") as acme,
        token_channel(orch.address, "globex-key") as globex,
    ):
        config = pb.SessionConfig(turn_detection=pb.TURN_DETECTION_CLIENT, max_response_tokens=8)
        client = await open_session(acme, pb.SessionStart(config=config))
        started = (await client.wait_for("session_started")).session_started
        client.send(end=pb.EndSession())
        await client.finished()
        session_id, token = started.session_id, started.resume_token
        assert (await orch.store.get(session_id)).tenant == "acme"

        acme_api, globex_api = minmo_pb2_grpc.MinMoStub(acme), minmo_pb2_grpc.MinMoStub(globex)
        assert (await acme_api.GetSession(pb.GetSessionRequest(session_id=session_id))).session_id == session_id

        unknown = uuid.uuid4().hex
        foreign_get = await rpc_error(globex_api.GetSession(pb.GetSessionRequest(session_id=session_id)))
        missing_get = await rpc_error(globex_api.GetSession(pb.GetSessionRequest(session_id=unknown)))
        assert foreign_get.code() == grpc.StatusCode.NOT_FOUND
        assert answer(foreign_get, session_id) == answer(missing_get, unknown)

        foreign_delete = await rpc_error(globex_api.DeleteSession(pb.DeleteSessionRequest(session_id=session_id)))
        missing_delete = await rpc_error(globex_api.DeleteSession(pb.DeleteSessionRequest(session_id=unknown)))
        assert foreign_delete.code() == grpc.StatusCode.NOT_FOUND
        assert answer(foreign_delete, session_id) == answer(missing_delete, unknown)

        foreign_resume = await refused_resume(globex, token)
        assert foreign_resume[0] == grpc.StatusCode.NOT_FOUND
        assert foreign_resume == await refused_resume(globex, "a-token-that-never-existed")

        # None of that touched acme's session: it is still there, resumable by acme, then deletable.
        resumed = await open_session(acme, pb.SessionStart(resume_token=token))
        assert (await resumed.wait_for("session_started")).session_started.resumed
        resumed.send(end=pb.EndSession())
        await resumed.finished()
        await acme_api.DeleteSession(pb.DeleteSessionRequest(session_id=session_id))
        gone = await rpc_error(acme_api.GetSession(pb.GetSessionRequest(session_id=session_id)))
        assert gone.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with temporary_store("tenants") as sessions:
        yield sessions


async def test_sessions_stored_before_tenants_belong_to_the_default_tenant(store: SessionStore, tmp_path: Path) -> None:
    record, token = await store.create({"instructions": "old"})
    await store.redis.hdel(store.session_key(record.session_id), "tenant")  # as written before tenants existed
    assert (await store.get(record.session_id)).tenant == "default"
    assert await store.resolve(token, tenant="default") == record.session_id

    reader = StoreSessionReader(store)
    port = free_port()
    plain = build_server(MinMoServicer(sessions=reader), port=port, health_servicer=health.aio.HealthServicer())
    keyed_port = free_port()
    verifier = ApiKeyVerifier.from_file(write_api_keys(tmp_path / "keys.json", KEYS))
    keyed = build_server(
        MinMoServicer(sessions=reader), port=keyed_port, health_servicer=health.aio.HealthServicer(), verifier=verifier
    )
    await plain.start()
    await keyed.start()
    request = pb.GetSessionRequest(session_id=record.session_id)
    try:
        async with token_channel(f"127.0.0.1:{port}", None) as no_auth:  # --auth none: the default tenant
            assert (await minmo_pb2_grpc.MinMoStub(no_auth).GetSession(request)).config.instructions == "old"
        async with token_channel(f"127.0.0.1:{keyed_port}", "acme-key") as acme:
            error = await rpc_error(minmo_pb2_grpc.MinMoStub(acme).GetSession(request))
        assert error.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await plain.stop(None)
        await keyed.stop(None)
    with pytest.raises(Exception, match="session not found"):
        await store.resolve(token, tenant="acme")
