"""The main job of the runnable core: one spoken question through all five models over Triton.

espeak-ng speaks a sentence; the PCM streams in 200 ms chunks through the listen path (encoder ->
backbone append -> duplex) until the duplex predictor says RESPOND_NOW; the speak path then streams
the reply (backbone -> speech_lm -> vocoder) into a 24 kHz WAV. Per-stage times come from Triton's
statistics API. With the smoke weights the reply is noise-like babble: the point is the plumbing,
the latency and the contracts, which are the same for the real weights.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from orchestrator.converse.context import BackboneContext
from orchestrator.stages.listen import ListenPath
from orchestrator.stages.speak import AudioDelta, SpeakConfig, SpeakPath, TextDelta
from orchestrator.triton.client import TritonModels
from orchestrator.triton_stats import MODELS, Snapshot, diff, format_table, scrape
from services.backbone import ChatPrompt, SmokeByteTokenizer
from services.duplex import Decision
from services.duplex.policy import DecisionPolicy
from services.duplex.synth import espeak

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
CHUNK_MS = 200


@dataclass
class DemoResult:
    reply_path: Path
    reply_seconds: float
    text: str
    respond_after_ms: float | None
    first_audio_ms: float | None
    stage_table: str


def spoken_question(text: str, trailing_silence_s: float = 1.6) -> np.ndarray:
    with tempfile.TemporaryDirectory() as cache:
        speech = espeak(text, voice="en-us", rate=165, pitch=50, cache_dir=Path(cache))
    lead = np.zeros(int(0.3 * INPUT_RATE), np.float32)
    tail = np.zeros(int(trailing_silence_s * INPUT_RATE), np.float32)
    return np.concatenate([lead, speech, tail])


async def snapshot(models: TritonModels, metrics_url: str) -> Snapshot:
    return Snapshot({m: await models.statistics(m) for m in MODELS}, *scrape(metrics_url))


async def run_demo(
    triton_url: str, metrics_url: str, text: str, out: Path, *, realtime: bool, log: Callable[[str], None] = print
) -> DemoResult:
    models = TritonModels(triton_url)
    tokenizer = SmokeByteTokenizer()
    prompt = ChatPrompt(tokenizer)
    before = await snapshot(models, metrics_url)
    pcm = spoken_question(text)
    log(f"user: {text!r} ({len(pcm) / INPUT_RATE:.2f} s of espeak-ng speech at 16 kHz)")

    context = BackboneContext(models, prompt)
    # The same context the duplex predictor was trained on: a spoken user turn opening the session.
    await context.append(ids=prompt.user_speech_open())
    listen = ListenPath(models, lambda embeddings: context.append(speech=embeddings))
    gate = DecisionPolicy().new_gate()
    chunk = INPUT_RATE * CHUNK_MS // 1000
    user_embeddings: list[np.ndarray] = []
    respond_after_ms: float | None = None
    speech_end_s = len(pcm) / INPUT_RATE
    started = time.perf_counter()
    for offset in range(0, len(pcm), chunk):
        piece = pcm[offset : offset + chunk]
        last = offset + chunk >= len(pcm)
        step = await listen.push(piece, speaking=False, end=last)
        user_embeddings.append(step.embeddings)
        decided = [gate.step(torch.tensor(p), speaking=False) for p in step.probs]
        if Decision.RESPOND_NOW in decided:
            audio_s = (offset + len(piece)) / INPUT_RATE
            respond_after_ms = (audio_s - (speech_end_s - 1.6)) * 1000
            log(f"duplex: RESPOND_NOW after {audio_s:.2f} s of audio ({respond_after_ms:.0f} ms after speech ended)")
            break
        if realtime:
            await asyncio.sleep(max(0.0, (offset + chunk) / INPUT_RATE - (time.perf_counter() - started)))
    else:
        log("duplex: no RESPOND_NOW decision; responding at the end of the audio")
    await listen.close()

    speak = SpeakPath(
        models,
        context.stream_id,
        prompt_ids=prompt.user_speech_close() + prompt.assistant_open(),
        user_embedding=np.concatenate(user_embeddings).mean(axis=0),
        decode=tokenizer.decode,
        config=SpeakConfig(max_new_tokens=40, temperature=0.8, seed=7),
    )
    audio: list[np.ndarray] = []
    token_ids: list[int] = []
    async for event in speak.run():
        if isinstance(event, TextDelta):
            token_ids.append(event.token_id)
        elif isinstance(event, AudioDelta):
            audio.append(event.samples)
    await context.append(ids=prompt.assistant_close())
    await context.close()

    reply = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), reply, OUTPUT_RATE, subtype="PCM_16")
    after = await snapshot(models, metrics_url)
    table = format_table([diff(m, before, after) for m in MODELS])
    await models.close()
    t = speak.timings
    reply_text = tokenizer.decode(token_ids)
    log(f"assistant text ({t.text_tokens} tokens, smoke weights babble): {reply_text!r}")
    log(
        f"speak path: first text token {t.first_token_ms:.0f} ms, first speech token "
        f"{t.first_speech_token_ms or 0:.0f} ms, first audio {t.first_audio_ms or 0:.0f} ms; "
        f"{t.speech_tokens} speech tokens -> {len(reply) / OUTPUT_RATE:.2f} s of audio"
    )
    log(f"reply written to {out} ({OUTPUT_RATE} Hz, {len(reply)} samples)")
    log(
        "per-model time (queue/execute: Triton's statistics API; work: minmo_compute_seconds_total, "
        "which also covers the decoupled models' streaming work):\n" + table
    )
    return DemoResult(out, len(reply) / OUTPUT_RATE, reply_text, respond_after_ms, t.first_audio_ms, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triton", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--metrics", default="http://127.0.0.1:8002/metrics", help="Triton metrics URL")
    parser.add_argument("--text", default="Hello there. What is the weather like in Paris today?")
    parser.add_argument("--out", type=Path, default=Path("out/reply.wav"))
    parser.add_argument("--realtime", action="store_true", help="send audio at real-time pace")
    args = parser.parse_args(argv)
    asyncio.run(run_demo(args.triton, args.metrics, args.text, args.out, realtime=args.realtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
