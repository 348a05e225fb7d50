"""Converse end to end: real gRPC over loopback, the real Triton models, real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest
import soxr
from minmo.v1 import minmo_pb2 as pb

from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from tests.integration.converse_client import ConverseClient, silence, speech
from tests.integration.helpers import open_streams
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


def kinds(client: ConverseClient) -> list[str]:
    return [str(e.WhichOneof("event")) for e in client.events]


def check_response(client: ConverseClient, done: pb.ServerEvent) -> None:
    """Audio deltas of a response are numbered without gaps and add up to the played duration."""
    rid = done.response_done.response_id
    audio = [e.audio_delta for e in client.of("audio_delta") if e.audio_delta.response_id == rid]
    assert [a.sequence for a in audio] == list(range(len(audio)))
    sent_ms = sum(len(a.data) // 2 for a in audio) * 1000 // 24_000
    assert audio and sent_ms > 0
    if done.response_done.status == pb.COMPLETED:
        assert done.response_done.played_ms == sent_ms
    latencies = done.response_done.latencies
    assert latencies.first_audio_ms > 0 and latencies.encoder_ms > 0


async def test_two_turns_with_model_turn_detection(triton: TritonProcess, cache: Path) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=20)))
        started = (await client.wait_for("session_started")).session_started
        for turn, text in enumerate(["Hello there. How are you today?", "Tell me a story about a cat."], start=1):
            client.send_audio(np.concatenate([silence(0.3), speech(text, cache), silence(1.6)]))
            done = await client.wait_for("response_done", count=turn)
            assert done.response_done.status == pb.COMPLETED
            check_response(client, done)
        client.send(end=pb.EndSession())
        await client.finished()
        order = [k for k in kinds(client) if k != "text_delta" and k != "audio_delta"]
        assert order[0] == "session_started"
        assert order.count("speech_stopped") == 2 and order.count("response_started") == 2
        first_response = order.index("response_started")
        assert order.index("speech_started") < order.index("speech_stopped") < first_response
        history = await orch.store.history(started.session_id)
        assert [t.role for t in history] == ["user", "assistant", "user", "assistant"]
        assert [t.sequence for t in history] == [1, 2, 3, 4]
        assert history[0].embedding_dim == 256 and history[0].audio_ms > 1000
        assistant = history[1]
        assert not assistant.interrupted and assistant.text == client.of("response_done")[0].response_done.text


async def test_client_commit_mode_waits_for_the_commit(triton: TritonProcess, cache: Path) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        client = ConverseClient(orch.channel)
        config = pb.SessionConfig(turn_detection=pb.TURN_DETECTION_CLIENT, max_response_tokens=10)
        client.send(session=pb.SessionStart(config=config))
        await client.wait_for("session_started")
        client.send_audio(np.concatenate([speech("What is the time?", cache), silence(2.5)]))
        await asyncio.sleep(3.0)
        assert not client.of("response_started"), "client turn detection must not respond on its own"
        client.send(commit=pb.CommitTurn())
        done = await client.wait_for("response_done")
        assert done.response_done.status == pb.COMPLETED
        check_response(client, done)
        await client.close()


async def test_barge_in_interrupts_and_stores_what_was_played(triton: TritonProcess, cache: Path) -> None:
    baseline = {m: open_streams(triton.ports.metrics, m) for m in ("speech_lm", "vocoder")}
    async with running_orchestrator(triton.grpc_url) as orch:
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=600)))
        started = (await client.wait_for("session_started")).session_started
        client.send_audio(np.concatenate([speech("Please tell me a very long story.", cache), silence(1.6)]))
        await client.wait_for("audio_delta")
        # The user talks over the assistant: the duplex model must stop it.
        await client.send_audio_paced(
            np.concatenate([speech("Stop, stop. Wait a moment please.", cache), silence(0.4)]), pace=4
        )
        done = await client.wait_for("response_done", within=60)
        assert done.response_done.status == pb.INTERRUPTED
        sent_ms = sum(len(e.audio_delta.data) // 2 for e in client.of("audio_delta")) * 1000 // 24_000
        assert 0 < done.response_done.played_ms <= sent_ms
        history = await orch.store.history(started.session_id)
        assistant = history[1]
        assert assistant.interrupted and assistant.audio_ms == done.response_done.played_ms
        # 5 text tokens per 600 ms of speech: only what was played is kept.
        assert len(assistant.token_ids) == min(-(-assistant.audio_ms // 120), 600)
        assert len(assistant.token_ids) < 600
        # The barge-in's audio is the next user turn, whose end point may already hold a speculative response:
        # once the session is over, every stream of the interrupted response and of any speculation is freed.
        await client.close()
        for model, count in baseline.items():
            for _ in range(50):
                if open_streams(triton.ports.metrics, model) == count:
                    break
                await asyncio.sleep(0.1)
            assert open_streams(triton.ports.metrics, model) == count, f"{model} streams not freed"


async def test_client_cancel_reports_played_duration(triton: TritonProcess, cache: Path) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=600)))
        started = (await client.wait_for("session_started")).session_started
        client.send(text=pb.TextInput(text="Tell me everything you know."))
        await client.wait_for("audio_delta", count=2)
        client.send(cancel=pb.CancelResponse(played_ms=480))
        done = await client.wait_for("response_done")
        assert done.response_done.status == pb.INTERRUPTED and done.response_done.played_ms == 480
        history = await orch.store.history(started.session_id)
        assert history[0].role == "user" and history[0].text == "Tell me everything you know."
        assert history[1].interrupted and len(history[1].token_ids) == 4  # 480 ms / 120 ms per text token
        await client.close()


async def test_concurrent_sessions_stay_isolated(triton: TritonProcess) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        clients = [ConverseClient(orch.channel) for _ in range(3)]
        for index, client in enumerate(clients):
            client.send(
                session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=8, temperature=0.7 + index / 10))
            )
        ids = [(await c.wait_for("session_started")).session_started.session_id for c in clients]
        assert len(set(ids)) == 3
        for index, client in enumerate(clients):
            client.send(text=pb.TextInput(text=f"message number {index}"))
        dones = await asyncio.gather(*(c.wait_for("response_done") for c in clients))
        for session_id, client, done in zip(ids, clients, dones, strict=True):
            history = await orch.store.history(session_id)
            index = clients.index(client)
            assert history[0].text == f"message number {index}"
            assert history[1].text == done.response_done.text
            assert {e.response_done.response_id for e in client.of("response_done")} == {2}
            await client.close()


async def test_bad_input_gets_clear_statuses_and_a_bad_chunk_is_survived(triton: TritonProcess, cache: Path) -> None:
    async with running_orchestrator(triton.grpc_url, max_sessions=1) as orch:
        first_not_config = ConverseClient(orch.channel)
        first_not_config.send(audio=pb.AudioChunk(data=b"\x00\x00"))
        await first_not_config.close()
        assert first_not_config.error is not None
        assert first_not_config.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "first Converse event must be `session`" in first_not_config.error.details()

        unknown = ConverseClient(orch.channel)
        unknown.send(session=pb.SessionStart(resume_token="no-such-token"))
        await unknown.close()
        assert unknown.error is not None and unknown.error.code() == grpc.StatusCode.NOT_FOUND

        bad_rate = ConverseClient(orch.channel)
        bad_rate.send(
            session=pb.SessionStart(config=pb.SessionConfig(input_audio_format=pb.AudioFormat(sample_rate_hz=4000)))
        )
        await bad_rate.close()
        assert bad_rate.error is not None and bad_rate.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "sample_rate_hz 4000" in bad_rate.error.details()

        live = ConverseClient(orch.channel)
        live.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=5)))
        await live.wait_for("session_started")
        crowded = ConverseClient(orch.channel)
        crowded.send(session=pb.SessionStart(config=pb.SessionConfig()))
        await crowded.close()
        assert crowded.error is not None and crowded.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        live.send(audio=pb.AudioChunk(data=b"\x01\x02\x03"))  # odd byte count: not PCM16
        live.send(audio=pb.AudioChunk(data=b"\x00\x00" * 32_000))  # 2 s in one chunk: over the limit
        errors = [await live.wait_for("error", count=n) for n in (1, 2)]
        assert all(e.error.code == "INVALID_ARGUMENT" for e in errors)
        live.send_audio(np.concatenate([speech("Are you still there?", cache), silence(1.6)]))
        done = await live.wait_for("response_done")
        assert done.response_done.status == pb.COMPLETED
        await live.close()


async def test_triton_unavailable_ends_the_call_and_keeps_the_session(triton: TritonProcess) -> None:
    closed = f"127.0.0.1:{free_port()}"
    async with running_orchestrator(closed) as down:
        client = ConverseClient(down.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig()))
        started = (await client.wait_for("session_started")).session_started
        await client.close()
        assert client.error is not None and client.error.code() == grpc.StatusCode.UNAVAILABLE
        assert "retry" in (client.error.details() or "")
        record = await down.store.get(started.session_id)
        assert record.session_id == started.session_id
        prefix = down.store.prefix
        async with running_orchestrator(triton.grpc_url, prefix=prefix) as up:
            again = ConverseClient(up.channel)
            again.send(session=pb.SessionStart(resume_token=started.resume_token))
            assert (await again.wait_for("session_started", within=30)).session_started.resumed
            again.send(text=pb.TextInput(text="hello again"))
            assert (await again.wait_for("response_done")).response_done.status == pb.COMPLETED
            await again.close()


async def test_float32_audio_at_48khz_is_resampled(triton: TritonProcess, cache: Path) -> None:
    audio16 = np.concatenate([speech("Good evening, how are you?", cache), silence(1.6)])
    audio48 = soxr.resample(audio16, 16_000, 48_000).astype("<f4")
    async with running_orchestrator(triton.grpc_url) as orch:
        client = ConverseClient(orch.channel)
        fmt = pb.AudioFormat(encoding=pb.AudioFormat.FLOAT32, sample_rate_hz=48_000)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(input_audio_format=fmt, max_response_tokens=5)))
        started = (await client.wait_for("session_started")).session_started
        for offset in range(0, len(audio48), 9600):  # 200 ms at 48 kHz
            client.send(audio=pb.AudioChunk(data=audio48[offset : offset + 9600].tobytes()))
        done = await client.wait_for("response_done")
        assert done.response_done.status == pb.COMPLETED
        history = await orch.store.history(started.session_id)
        # The turn ends at the respond decision, inside the trailing silence: all speech was heard at 16 kHz.
        assert (len(audio16) / 16 - 1600) < history[0].audio_ms <= len(audio16) / 16
        await client.close()


async def test_long_silence_does_not_grow_the_context(triton: TritonProcess, cache: Path) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=5)))
        started = (await client.wait_for("session_started")).session_started
        client.send_audio(silence(20.0))
        client.send_audio(np.concatenate([speech("Is anybody there?", cache), silence(1.6)]))
        done = await client.wait_for("response_done")
        assert done.response_done.status == pb.COMPLETED
        history = await orch.store.history(started.session_id)
        # The stored (and rebuilt) user turn holds the question, not the 20 s of silence before it.
        assert history[0].audio_ms < 9_000
        assert history[0].speech_matrix().shape[0] < 9_000 // 120
        await client.close()
