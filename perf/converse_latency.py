"""What a Converse user waits for, measured at the client over real-time-paced conversations.

``python -m perf.converse_latency --server 127.0.0.1:50051 --runs 5`` (the stack must be up:
``make up``) runs conversations of a question, a pause, and a barge-in over the answer, and reports:

- end of user speech -> first audio byte received (the client knows when its last word left);
- barge-in start -> last audio byte received (how long the assistant talks over the user);
- Redis round trips per acknowledged turn, from Redis's own command counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import redis
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from services.duplex.synth import espeak

RATE = 16_000
CHUNK = 1600  # 100 ms


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def one_conversation(server: str, cache: Path) -> dict[str, float]:
    question = espeak("What is the weather like in Paris today?", "en-us", 165, 50, cache)
    barge = espeak("Wait, stop, I have another question for you", "en-us", 165, 50, cache)
    marks: dict[str, float] = {}
    first_response_audio = asyncio.Event()
    second_response_audio = asyncio.Event()
    responses_done = 0
    finished = asyncio.Event()

    async def events() -> AsyncIterator[pb.ClientEvent]:
        yield pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=400)))
        for offset in range(0, len(question), CHUNK):
            yield pb.ClientEvent(audio=pb.AudioChunk(data=_pcm16(question[offset : offset + CHUNK])))
            await asyncio.sleep(CHUNK / RATE)
        marks["end_of_speech"] = time.perf_counter()
        while not first_response_audio.is_set():
            yield pb.ClientEvent(audio=pb.AudioChunk(data=_pcm16(np.zeros(CHUNK, np.float32))))
            await asyncio.sleep(CHUNK / RATE)
        await asyncio.sleep(1.5)  # let the answer play a while
        marks["barge_in"] = time.perf_counter()
        for offset in range(0, len(barge), CHUNK):
            yield pb.ClientEvent(audio=pb.AudioChunk(data=_pcm16(barge[offset : offset + CHUNK])))
            await asyncio.sleep(CHUNK / RATE)
        await finished.wait()
        yield pb.ClientEvent(end=pb.EndSession())

    async with grpc.aio.insecure_channel(server) as channel:
        async for event in minmo_pb2_grpc.MinMoStub(channel).Converse(events()):
            kind = event.WhichOneof("event")
            now = time.perf_counter()
            if kind == "audio_delta":
                if not first_response_audio.is_set():
                    marks["first_audio"] = now
                    first_response_audio.set()
                elif "barge_in" in marks and not second_response_audio.is_set():
                    marks["last_audio_after_barge_in"] = now
            elif kind == "response_done":
                responses_done += 1
                if event.response_done.status == pb.INTERRUPTED:
                    marks["interrupted"] = now
                    finished.set()
    return {
        "end_of_speech_to_first_audio_ms": (marks["first_audio"] - marks["end_of_speech"]) * 1000,
        "barge_in_to_last_audio_ms": (marks.get("last_audio_after_barge_in", marks["barge_in"]) - marks["barge_in"])
        * 1000,
        "barge_in_to_response_done_ms": (marks.get("interrupted", float("nan")) - marks["barge_in"]) * 1000,
    }


def redis_calls() -> int:
    stats = redis.Redis(host="127.0.0.1", port=6379).info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def run(server: str, runs: int) -> dict[str, object]:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        before = redis_calls()
        for _ in range(runs):
            rows.append(await one_conversation(server, Path(cache)))
        calls = redis_calls() - before
    summary: dict[str, object] = {"runs": runs, "redis_commands_per_conversation": calls / runs}
    for key in rows[0]:
        values = np.array([row[key] for row in rows])
        summary[key] = {"p50": float(np.median(values)), "max": float(values.max())}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("out/perf/converse_latency.json"))
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args.server, args.runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
