"""One spoken turn at real-time pace, measured at the client: through Converse, or as a direct Triton chain.

The scenario: a short lead of silence, an espeak-ng question, then silence sent at real-time pace
until the reply is over (the duplex model ends the turn on the pause, the assistant answers while
the user keeps "listening"). Both paths stream 100 ms chunks, mark the end of the user's speech when
the last spoken chunk has been played out, and record the arrival time and length of every reply
audio chunk, so time to first audio, chunk gaps, underruns and real-time factor are computed the
same way for both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import torch
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.converse.context import BackboneContext
from orchestrator.stages.listen import ListenPath
from orchestrator.stages.speak import AudioDelta, SpeakConfig, SpeakPath
from orchestrator.triton.client import TritonModels
from services.backbone import ChatPrompt, SmokeByteTokenizer
from services.duplex import Decision
from services.duplex.policy import DecisionPolicy
from services.duplex.synth import espeak

RATE = 16_000
OUTPUT_RATE = 24_000
CHUNK = RATE // 10  # 100 ms
QUESTION = "Hello there. What is the weather like today?"
MAX_TOKENS = 40
TURN_TIMEOUT_S = 15.0
STAGES = ("encoder_ms", "backbone_prefill_ms", "duplex_ms", "first_token_ms", "first_speech_token_ms", "first_audio_ms")


@dataclass
class TurnResult:
    """What one client saw of one turn (times in seconds from ``time.perf_counter``)."""

    end_of_speech: float
    arrivals: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)  # 24 kHz samples per audio chunk
    stages: dict[str, float] = field(default_factory=dict)  # response_done.latencies (orchestrated only)
    acknowledged: bool = False

    @property
    def ttfa_ms(self) -> float | None:
        return (self.arrivals[0] - self.end_of_speech) * 1000 if self.arrivals else None

    @property
    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]

    @property
    def audio_s(self) -> float:
        return sum(self.samples) / OUTPUT_RATE

    @property
    def underruns(self) -> int:
        """Chunks that arrived after the audio before them had played out (playback from the first chunk)."""
        if not self.arrivals:
            return 0
        played = 0.0
        count = 0
        for arrival, samples in zip(self.arrivals, self.samples, strict=True):
            if arrival - self.arrivals[0] > played + 1e-3:
                count += 1
            played += samples / OUTPUT_RATE
        return count

    @property
    def rtf(self) -> float | None:
        """Wall time to stream the reply after its first chunk over the audio it carried after that chunk."""
        rest = sum(self.samples[1:]) / OUTPUT_RATE
        return (self.arrivals[-1] - self.arrivals[0]) / rest if rest > 0 else None


def spoken_question(cache: Path) -> tuple[np.ndarray, int]:
    """The whole clip to stream (lead silence, speech, trailing pause) and the sample where speech ends."""
    speech = espeak(QUESTION, voice="en-us", rate=165, pitch=50, cache_dir=cache)
    lead = np.zeros(int(0.4 * RATE), np.float32)
    tail = np.zeros(int(1.6 * RATE), np.float32)
    return np.concatenate([lead, speech, tail]), len(lead) + len(speech)


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def converse_turn(server: str, clip: np.ndarray, speech_end: int) -> TurnResult:
    """One session, one turn through the orchestrator."""
    started = time.perf_counter()
    result = TurnResult(end_of_speech=started + speech_end / RATE)
    done = asyncio.Event()

    async def events() -> AsyncIterator[pb.ClientEvent]:
        yield pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=MAX_TOKENS)))
        offset = 0
        while not done.is_set() and time.perf_counter() - started < TURN_TIMEOUT_S:
            piece = clip[offset : offset + CHUNK] if offset < len(clip) else np.zeros(CHUNK, np.float32)
            yield pb.ClientEvent(audio=pb.AudioChunk(data=_pcm16(piece)))
            offset += CHUNK
            await asyncio.sleep(max(0.0, started + offset / RATE - time.perf_counter()))
        yield pb.ClientEvent(end=pb.EndSession())

    async with grpc.aio.insecure_channel(server) as channel:
        async for event in minmo_pb2_grpc.MinMoStub(channel).Converse(events()):
            kind = event.WhichOneof("event")
            if kind == "audio_delta" and not done.is_set():
                result.arrivals.append(time.perf_counter())
                result.samples.append(len(event.audio_delta.data) // 2)
            elif kind == "response_done" and not done.is_set():
                lat = event.response_done.latencies
                result.stages = {name: float(getattr(lat, name)) for name in STAGES}
                result.acknowledged = event.response_done.status == pb.COMPLETED
                done.set()
    return result


async def direct_turn(triton: str, clip: np.ndarray, speech_end: int) -> TurnResult:
    """The same turn as a direct chain of Triton calls (demo_chain's pieces), no orchestrator, no Redis."""
    models = TritonModels(triton)
    tokenizer = SmokeByteTokenizer()
    prompt = ChatPrompt(tokenizer)
    context = BackboneContext(models, prompt)
    await context.append(ids=prompt.user_speech_open())
    listen = ListenPath(models, lambda embeddings: context.append(speech=embeddings))
    gate = DecisionPolicy().new_gate()
    embeddings: list[np.ndarray] = []
    started = time.perf_counter()
    result = TurnResult(end_of_speech=started + speech_end / RATE)
    try:
        for offset in range(0, len(clip), CHUNK):
            step = await listen.push(clip[offset : offset + CHUNK], speaking=False, end=offset + CHUNK >= len(clip))
            embeddings.append(step.embeddings)
            voiced = offset + CHUNK > int(0.4 * RATE)
            if voiced and Decision.RESPOND_NOW in [gate.step(torch.tensor(p), speaking=False) for p in step.probs]:
                break
            await asyncio.sleep(max(0.0, started + (offset + CHUNK) / RATE - time.perf_counter()))
        await listen.close()
        speak = SpeakPath(
            models,
            context.stream_id,
            prompt_ids=prompt.user_speech_close() + prompt.assistant_open(),
            user_embedding=np.concatenate(embeddings).mean(axis=0),
            decode=tokenizer.decode,
            config=SpeakConfig(max_new_tokens=MAX_TOKENS),
        )
        async for event in speak.run():
            if isinstance(event, AudioDelta):
                result.arrivals.append(time.perf_counter())
                result.samples.append(event.samples.size)
        result.acknowledged = True
        await context.close()
    finally:
        await models.close()
    return result
