"""One spoken conversation through Converse at real-time pace, measured as a listener hears it.

The script: a question, a pause (the duplex model ends the turn and the assistant answers), then,
1.5 s into the answer's playback, the user barges in with a second question and pauses again; the
second answer plays to its end. A turn's end of speech is the moment its last spoken chunk has been
played out at real-time pace; every reply chunk's arrival time and length is recorded per response,
so time to first audio, chunk gaps, underruns and real-time factor mean the same here as for the
direct chain in ``perf.scenario``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from perf.scenario import CHUNK, LEAD_S, MAX_TOKENS, RATE, STAGES, TurnResult, pcm16
from services.speech_synth import espeak

FIRST_QUESTION = "Hello there. What is the weather like today?"
BARGE_IN = "Wait, stop. Tell me about the weekend instead."
PLAY_BEFORE_BARGE_IN_S = 1.5
CONVERSATION_TIMEOUT_S = 40.0


@dataclass
class Clips:
    """The two spoken questions (16 kHz float32) and the lead silence before the first."""

    question: np.ndarray
    barge_in: np.ndarray

    @classmethod
    def speak(cls, cache: Path) -> Clips:
        lead = np.zeros(int(LEAD_S * RATE), np.float32)
        question = espeak(FIRST_QUESTION, voice="en-us", rate=165, pitch=50, cache_dir=cache)
        barge_in = espeak(BARGE_IN, voice="en-us", rate=175, pitch=60, cache_dir=cache)
        return cls(question=np.concatenate([lead, question]), barge_in=barge_in)


@dataclass
class ConversationResult:
    """Both answers as ``TurnResult`` (the first one cut by the barge-in) and the barge-in's timings."""

    first: TurnResult
    second: TurnResult | None = None
    barge_in_at: float | None = None
    first_done_at: float | None = None  # response_done (INTERRUPTED) of the first answer
    error: str | None = None

    @property
    def turns(self) -> list[TurnResult]:
        return [self.first] + ([self.second] if self.second is not None else [])

    @property
    def barge_in_to_last_audio_ms(self) -> float | None:
        """How long the assistant kept talking over the user (last chunk of the first answer received)."""
        if self.barge_in_at is None:
            return None
        after = [t for t in self.first.arrivals if t >= self.barge_in_at]
        return ((after[-1] if after else self.barge_in_at) - self.barge_in_at) * 1000

    @property
    def barge_in_to_done_ms(self) -> float | None:
        if self.barge_in_at is None or self.first_done_at is None:
            return None
        return (self.first_done_at - self.barge_in_at) * 1000


class _Script:
    """The client half: what to send when, driven by what the server has said so far."""

    def __init__(self, clips: Clips) -> None:
        self.clips = clips
        self.started = time.perf_counter()
        self.sent = 0  # samples sent, for real-time pacing
        self.first_audio = asyncio.Event()
        self.second_done = asyncio.Event()
        self.result = ConversationResult(first=TurnResult(end_of_speech=float("inf")))
        self._first_id: int | None = None

    async def _send(self, samples: np.ndarray) -> pb.ClientEvent:
        self.sent += samples.size
        await asyncio.sleep(max(0.0, self.started + self.sent / RATE - time.perf_counter()))
        return pb.ClientEvent(audio=pb.AudioChunk(data=pcm16(samples)))

    async def _speak(self, clip: np.ndarray) -> AsyncIterator[pb.ClientEvent]:
        for offset in range(0, len(clip), CHUNK):
            yield await self._send(clip[offset : offset + CHUNK])

    async def _silence_until(self, event: asyncio.Event, extra_s: float = 0.0) -> AsyncIterator[pb.ClientEvent]:
        silence = np.zeros(CHUNK, np.float32)
        while not event.is_set() and not self.timed_out:
            yield await self._send(silence)
        for _ in range(round(extra_s * RATE / CHUNK)):
            yield await self._send(silence)

    @property
    def timed_out(self) -> bool:
        return time.perf_counter() - self.started > CONVERSATION_TIMEOUT_S

    async def events(self) -> AsyncIterator[pb.ClientEvent]:
        yield pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=MAX_TOKENS)))
        async for event in self._speak(self.clips.question):
            yield event
        self.result.first.end_of_speech = time.perf_counter()
        async for event in self._silence_until(self.first_audio, PLAY_BEFORE_BARGE_IN_S):
            yield event
        self.result.barge_in_at = time.perf_counter()
        async for event in self._speak(self.clips.barge_in):
            yield event
        self.result.second = TurnResult(end_of_speech=time.perf_counter())
        async for event in self._silence_until(self.second_done):
            yield event
        yield pb.ClientEvent(end=pb.EndSession())

    def on_event(self, event: pb.ServerEvent) -> None:
        now = time.perf_counter()
        kind = event.WhichOneof("event")
        if kind == "audio_delta":
            turn = self._turn_of(event.audio_delta.response_id)
            if turn is not None:
                turn.arrivals.append(now)
                turn.samples.append(len(event.audio_delta.data) // 2)
            self.first_audio.set()
        elif kind == "response_done":
            done = event.response_done
            turn = self._turn_of(done.response_id)
            if turn is not None:
                turn.stages = {name: float(getattr(done.latencies, name)) for name in STAGES}
                turn.acknowledged = True
            if turn is self.result.first:
                self.result.first_done_at = now
            elif turn is not None and turn is self.result.second:
                self.second_done.set()
        elif kind == "error":
            self.result.error = f"{event.error.code}: {event.error.message}"

    def _turn_of(self, response_id: int) -> TurnResult | None:
        """The first response seen answers the first question; a later one answers the barge-in once it is spoken.

        A response the duplex model starts in the middle of the barge-in (on a pause inside it) counts for
        neither: its time to first audio has no end of speech to be measured from.
        """
        if self._first_id is None:
            self._first_id = response_id
        if response_id == self._first_id:
            return self.result.first
        return self.result.second


async def converse_conversation(server: str, clips: Clips) -> ConversationResult:
    """Hold the scripted conversation with ``minmo serve`` at ``server``; never raises for a failed call."""
    script = _Script(clips)
    try:
        async with grpc.aio.insecure_channel(server) as channel:
            async for event in minmo_pb2_grpc.MinMoStub(channel).Converse(script.events()):
                script.on_event(event)
    except grpc.aio.AioRpcError as exc:
        script.result.error = f"{exc.code().name}: {exc.details()}"
    return script.result
