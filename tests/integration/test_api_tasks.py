"""Transcribe, Synthesize, GetSession and DeleteSession through the gRPC API."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import TritonProcess
from tests.integration.converse_client import ConverseClient, pcm16, speech
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_transcribe_streams_text_and_ends_with_final(triton: TritonProcess, tmp_path: Path) -> None:
    audio = speech("The quick brown fox jumps over the lazy dog.", tmp_path)

    async def requests():
        yield pb.TranscribeRequest(config=pb.TranscribeConfig(task=pb.ASR))
        for offset in range(0, len(audio), 3200):
            yield pb.TranscribeRequest(audio=pb.AudioChunk(data=pcm16(audio[offset : offset + 3200])))

    async with running_orchestrator(triton.grpc_url) as orch:
        responses = [r async for r in minmo_pb2_grpc.MinMoStub(orch.channel).Transcribe(requests())]
    assert responses[-1].final and not any(r.final for r in responses[:-1])
    assert "".join(r.text_delta for r in responses)  # smoke weights: some text, not a real transcript


async def test_transcribe_rejects_audio_before_config(triton: TritonProcess) -> None:
    async def requests():
        yield pb.TranscribeRequest(audio=pb.AudioChunk(data=b"\x00\x00"))

    async with running_orchestrator(triton.grpc_url) as orch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in minmo_pb2_grpc.MinMoStub(orch.channel).Transcribe(requests()):
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first Transcribe message must be `config`" in (info.value.details() or "")


async def test_synthesize_streams_whole_speech_tokens_and_voice_prompts_matter(
    triton: TritonProcess, tmp_path: Path
) -> None:
    voice = pcm16(speech("This is my voice.", tmp_path, voice="en-us"))
    other = pcm16(speech("This is my voice.", tmp_path, voice="en-gb-scotland"))
    async with running_orchestrator(triton.grpc_url) as orch:
        stub = minmo_pb2_grpc.MinMoStub(orch.channel)
        results = []
        for prompt in (b"", voice, other):
            request = pb.SynthesizeRequest(text="Good morning, everyone.", instruction="happy", voice_prompt=prompt)
            results.append([r async for r in stub.Synthesize(request)])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.Synthesize(pb.SynthesizeRequest(text="")):
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    audio = []
    for responses in results:
        assert [r.sequence for r in responses] == list(range(len(responses)))
        samples = np.frombuffer(b"".join(r.audio for r in responses), "<i2")
        assert len(samples) > 0 and len(samples) % 960 == 0
        audio.append(samples)
    assert len(audio[1]) == len(audio[2]) and not np.array_equal(audio[1], audio[2])


async def test_get_and_delete_session(triton: TritonProcess, tmp_path: Path) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=6)))
        started = (await client.wait_for("session_started")).session_started
        client.send(text=pb.TextInput(text="hello"))
        await client.wait_for("response_done")
        client.send(end=pb.EndSession())
        await client.finished()
        stub = minmo_pb2_grpc.MinMoStub(orch.channel)
        session = await stub.GetSession(pb.GetSessionRequest(session_id=started.session_id))
        assert [t.role for t in session.turns] == ["user", "assistant"] and session.turns[0].text == "hello"
        assert session.config.max_response_tokens == 6
        await stub.DeleteSession(pb.DeleteSessionRequest(session_id=started.session_id))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetSession(pb.GetSessionRequest(session_id=started.session_id))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        resume = ConverseClient(orch.channel)
        resume.send(session=pb.SessionStart(resume_token=started.resume_token))
        await resume.close()
        assert resume.error is not None and resume.error.code() == grpc.StatusCode.NOT_FOUND
