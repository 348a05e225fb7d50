"""Limits as a client sees them on the real stack (real Triton, Redis, gRPC over loopback):
per-tenant sessions and audio rate with retry hints, and load shedding that keeps running sessions real-time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc
from prometheus_client import REGISTRY

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.limits.tenants import WINDOW_MS, TenantLimitSettings
from orchestrator.security.verifiers import ApiKeyVerifier
from tests.integration.auth_support import token_channel, write_api_keys
from tests.integration.converse_client import CHUNK, ConverseClient, pcm16, silence, speech
from tests.integration.orchestrator_fixture import Orchestrator, running_orchestrator

pytestmark = [pytest.mark.integration]

KEYS = {"acme-key": "acme", "globex-key": "globex"}
CLIENT_TURNS = pb.SessionConfig(turn_detection=pb.TURN_DETECTION_CLIENT, max_response_tokens=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture
def verifier(tmp_path: Path) -> ApiKeyVerifier:
    return ApiKeyVerifier.from_file(write_api_keys(tmp_path / "keys.json", KEYS))


async def started(channel: grpc.aio.Channel, config: pb.SessionConfig = CLIENT_TURNS) -> ConverseClient:
    client = ConverseClient(channel)
    client.send(session=pb.SessionStart(config=config))
    await client.wait_for("session_started")
    return client


async def refused(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    """A new session that the server refuses; the error the client got."""
    client = ConverseClient(channel)
    client.send(session=pb.SessionStart(config=CLIENT_TURNS))
    await client.finished()
    await client.close()  # ends the request stream the refused call left waiting
    assert client.error is not None, f"the session was not refused: {[e.WhichOneof('event') for e in client.events]}"
    return client.error


def retry_after_ms(error: grpc.aio.AioRpcError) -> int:
    return int(dict(error.trailing_metadata() or ())["retry-after-ms"])


async def away_from_a_window_boundary(orch: Orchestrator) -> None:
    """The audio window is a fixed minute: a test that must stay inside one waits out its last 20 s.

    20 s, not less: the test holds a spoken and a typed turn, an answer, a Synthesize and a Transcribe
    inside the one window, which takes several seconds on a loaded 2-core machine.
    """
    seconds, micros = await orch.store.redis.time()
    left_ms = WINDOW_MS - (seconds * 1000 + micros // 1000) % WINDOW_MS
    if left_ms < 20_000:
        await asyncio.sleep(left_ms / 1000 + 0.05)


@pytest.mark.slow
async def test_concurrent_sessions_per_tenant(triton: TritonProcess, verifier: ApiKeyVerifier) -> None:
    limits = TenantLimitSettings(max_sessions=1)
    async with (
        running_orchestrator(triton.grpc_url, verifier=verifier, tenant_limits=limits) as orch,
        token_channel(orch.address, "acme-key") as acme,
        token_channel(orch.address, "globex-key") as globex,
    ):
        first = await started(acme)
        error = await refused(acme)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == "tenant 'acme' is over its limit of 1 concurrent sessions; retry in 2.0 s"
        assert retry_after_ms(error) == 2000
        other = await started(globex)  # another tenant is not held back by acme's sessions
        first.send(end=pb.EndSession())
        await first.finished()
        again = await started(acme)  # the slot came back when acme's session ended
        for client in (other, again):
            client.send(end=pb.EndSession())
            await client.finished()


@pytest.mark.slow
async def test_audio_over_the_tenant_rate_is_dropped_and_the_session_goes_on(
    triton: TritonProcess, verifier: ApiKeyVerifier
) -> None:
    limits = TenantLimitSettings(audio_seconds_per_minute=1.0)
    async with (
        running_orchestrator(triton.grpc_url, verifier=verifier, tenant_limits=limits) as orch,
        token_channel(orch.address, "acme-key") as acme,
    ):
        await away_from_a_window_boundary(orch)
        client = await started(acme)
        for _ in range(8):  # 8 chunks of 200 ms: the first 5 fill the tenant's second, the last 3 are over
            client.send(audio=pb.AudioChunk(data=pcm16(silence(CHUNK / 16_000))))
        await client.wait_for("error", count=3)
        errors = [e.error for e in client.of("error")]
        assert [e.code for e in errors] == ["RESOURCE_EXHAUSTED"] * 3
        assert "tenant 'acme' is over its limit of 1 audio seconds per minute; retry in" in errors[0].message
        # The session is intact: a typed turn (no audio) is answered and stored.
        client.send(text=pb.TextInput(text="still there?"))
        done = await client.wait_for("response_done")
        assert done.response_done.status == pb.COMPLETED
        session_id = client.of("session_started")[0].session_started.session_id
        history = await orch.store.history(session_id)
        # The accepted second of audio is the first (spoken) user turn; the typed turn and its answer follow.
        assert [t.role for t in history] == ["user", "user", "assistant"]
        assert history[0].audio_ms == 1000 and history[1].text == "still there?"
        client.send(end=pb.EndSession())
        await client.finished()
        assert client.error is None

        # Transcribe and Synthesize are stateless, but the same minute is used up for them too.
        api = minmo_pb2_grpc.MinMoStub(acme)
        with pytest.raises(grpc.aio.AioRpcError) as synthesis:
            async for _ in api.Synthesize(pb.SynthesizeRequest(text="hello")):
                pass
        assert synthesis.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after_ms(synthesis.value) > 0

        async def transcription():
            yield pb.TranscribeRequest(config=pb.TranscribeConfig(task=pb.ASR))
            yield pb.TranscribeRequest(audio=pb.AudioChunk(data=pcm16(silence(0.2))))

        with pytest.raises(grpc.aio.AioRpcError) as transcribe:
            async for _ in api.Transcribe(transcription()):
                pass
        assert transcribe.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def underruns() -> float:
    return REGISTRY.get_sample_value("minmo_audio_underruns_total") or 0.0


@pytest.mark.slow
async def test_under_twice_the_capacity_new_sessions_are_shed_and_running_ones_stay_real_time(
    triton: TritonProcess, cache: Path
) -> None:
    capacity = 2
    utterance = np.concatenate([silence(0.3), speech("Hello there. How are you today?", cache), silence(1.6)])
    async with running_orchestrator(triton.grpc_url, max_sessions=capacity, shedding=True) as orch:
        before = underruns()
        config = pb.SessionConfig(max_response_tokens=12)
        running = [await started(orch.channel, config) for _ in range(capacity)]
        talking = [asyncio.create_task(client.send_audio_paced(utterance)) for client in running]
        await asyncio.sleep(1.0)  # the running sessions are mid-utterance
        errors = await asyncio.gather(*(refused(orch.channel) for _ in range(2 * capacity)))
        for error in errors:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "at capacity (2 of 2 sessions)" in error.details() and retry_after_ms(error) == 1000
        await asyncio.gather(*talking)
        dones = await asyncio.gather(*(client.wait_for("response_done", within=90) for client in running))
        assert [done.response_done.status for done in dones] == [pb.COMPLETED] * capacity
        assert all(done.response_done.played_ms > 0 for done in dones)
        assert underruns() == before, "a running session's audio fell behind real time"
        assert orch.admission is not None and orch.admission.shedder is not None
        assert orch.admission.shedder.refused == 2 * capacity
        for client in running:
            assert not client.of("error") and client.error is None
            client.send(end=pb.EndSession())
            await client.finished()
