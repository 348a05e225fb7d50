"""``minmo talk``: a Converse client that streams speech at real-time pace and records the replies.

Without ``--wav`` it plays a scripted conversation spoken by espeak-ng: a question and a pause (the
duplex model ends the turn), a second question, and a barge-in while the assistant answers it. It
plays nothing aloud: the replies go to a 24 kHz WAV, and the events and per-turn latencies are
printed as they arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import soundfile as sf
import soxr
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from services.speech_synth import espeak

RATE = 16_000
CHUNK_MS = 100
OUTPUT_RATE = 24_000


@dataclass
class Step:
    """Send ``audio``; then, if ``barge_in_after_ms`` is set, wait until that much reply audio arrived."""

    audio: np.ndarray
    wait_for_response: bool = False
    barge_in_after_ms: int | None = None


@dataclass
class Transcript:
    replies: list[np.ndarray] = field(default_factory=list)
    responses: int = 0
    reply_ms: int = 0


def _say(text: str, cache: Path) -> np.ndarray:
    return espeak(text, voice="en-us", rate=165, pitch=50, cache_dir=cache)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def scripted_conversation(cache: Path) -> list[Step]:
    question = _say("Hello there. What is the weather like today?", cache)
    story = _say("Tell me a long story about a brave little cat.", cache)
    interruption = _say("Sorry to interrupt you, please just say goodbye now", cache)
    return [
        Step(np.concatenate([_silence(0.4), question, _silence(1.6)]), wait_for_response=True),
        Step(np.concatenate([story, _silence(1.6)]), barge_in_after_ms=1200),
        Step(np.concatenate([interruption, _silence(1.6)]), wait_for_response=True),
    ]


def wav_conversation(path: Path) -> list[Step]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE).astype(np.float32)
    return [Step(np.concatenate([mono, _silence(1.6)]), wait_for_response=True)]


def _heard(transcript: Transcript, reply_ms: int) -> bool:
    return transcript.reply_ms >= reply_ms


def _answered(transcript: Transcript, responses: int) -> bool:
    return transcript.responses > responses


def _describe(event: pb.ServerEvent) -> str | None:
    kind = event.WhichOneof("event")
    if kind == "session_started":
        s = event.session_started
        return f"session_started id={s.session_id} resumed={s.resumed} history={s.history_turns}"
    if kind == "speech_started":
        return f"speech_started at {event.speech_started.audio_start_ms} ms"
    if kind == "speech_stopped":
        return f"speech_stopped at {event.speech_stopped.audio_end_ms} ms"
    if kind == "response_started":
        return f"response_started #{event.response_started.response_id}"
    if kind == "response_done":
        d = event.response_done
        lat = d.latencies
        return (
            f"response_done #{d.response_id} {pb.ResponseStatus.Name(d.status)} played={d.played_ms} ms\n"
            f"    latencies: end of speech -> first audio {lat.end_of_speech_to_first_audio_ms:.0f} ms | "
            f"decision -> first token {lat.first_token_ms:.0f} ms, first speech token "
            f"{lat.first_speech_token_ms:.0f} ms, first audio {lat.first_audio_ms:.0f} ms | listen path over the "
            f"turn: encoder {lat.encoder_ms:.0f} ms, backbone {lat.backbone_prefill_ms:.0f} ms, duplex "
            f"{lat.duplex_ms:.0f} ms"
        )
    if kind == "error":
        return f"error {event.error.code}: {event.error.message}"
    return None  # text and audio deltas are summarised, not printed one by one


async def talk(server: str, steps: list[Step], out: Path, log: Callable[[str], None] = print) -> Transcript:
    transcript = Transcript()
    reply_audio = asyncio.Condition()

    async def client_events() -> AsyncIterator[pb.ClientEvent]:
        yield pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=40)))
        for step in steps:
            before = transcript.responses
            heard_before = transcript.reply_ms
            for offset in range(0, len(step.audio), RATE * CHUNK_MS // 1000):
                piece = step.audio[offset : offset + RATE * CHUNK_MS // 1000]
                yield pb.ClientEvent(audio=pb.AudioChunk(data=(piece * 32767).astype("<i2").tobytes()))
                await asyncio.sleep(CHUNK_MS / 1000)
            if step.barge_in_after_ms is not None:
                async with reply_audio:
                    await reply_audio.wait_for(
                        functools.partial(_heard, transcript, heard_before + step.barge_in_after_ms)
                    )
            if step.wait_for_response:
                async with reply_audio:
                    await reply_audio.wait_for(functools.partial(_answered, transcript, before))
        async with reply_audio:
            await reply_audio.wait_for(lambda: not pending_response())
        yield pb.ClientEvent(end=pb.EndSession())

    started: set[int] = set()

    def pending_response() -> bool:
        return len(started) > transcript.responses

    async with grpc.aio.insecure_channel(server) as channel:
        call = minmo_pb2_grpc.MinMoStub(channel).Converse(client_events())
        text: dict[int, list[str]] = {}
        t0 = time.perf_counter()
        async for event in call:
            kind = event.WhichOneof("event")
            line = _describe(event)
            if line:
                log(f"[{time.perf_counter() - t0:6.2f} s] {line}")
            async with reply_audio:
                if kind == "response_started":
                    started.add(event.response_started.response_id)
                elif kind == "text_delta":
                    text.setdefault(event.text_delta.response_id, []).append(event.text_delta.text)
                elif kind == "audio_delta":
                    samples = np.frombuffer(event.audio_delta.data, "<i2").astype(np.float32) / 32768
                    transcript.replies.append(samples)
                    transcript.reply_ms += len(samples) * 1000 // OUTPUT_RATE
                elif kind == "response_done":
                    transcript.responses += 1
                    log(f"    text: {event.response_done.text!r}")
                reply_audio.notify_all()
    reply = np.concatenate(transcript.replies) if transcript.replies else np.zeros(0, np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), reply, OUTPUT_RATE, subtype="PCM_16")
    log(f"{transcript.responses} responses, {len(reply) / OUTPUT_RATE:.2f} s of reply audio written to {out}")
    return transcript


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minmo talk", description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051", help="orchestrator gRPC address")
    parser.add_argument("--wav", type=Path, help="speak this WAV instead of the scripted conversation")
    parser.add_argument("--out", type=Path, default=Path("out/reply.wav"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        steps = wav_conversation(args.wav) if args.wav else scripted_conversation(Path(cache))
        try:
            asyncio.run(talk(args.server, steps, args.out))
        except grpc.aio.AioRpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
