"""The main job of the runnable core: one spoken question through all five models over Triton.

espeak-ng speaks a sentence; the direct chain (:mod:`orchestrator.direct_chain`) streams the PCM in
200 ms chunks through the listen path (encoder -> backbone append -> duplex) until the duplex
predictor says RESPOND_NOW, then the speak path streams the reply (backbone -> speech_lm -> vocoder)
into a 24 kHz WAV. Per-stage times come from Triton's statistics API. With the smoke weights the
reply is noise-like babble: the point is the plumbing, the latency and the contracts, which are the
same for the real weights.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from minmo_contracts.tokenizer import SmokeByteTokenizer
from orchestrator.direct_chain import INPUT_RATE, ChainConfig, run_turn
from orchestrator.stages.speak import AudioDelta, SpeakConfig
from orchestrator.triton.client import TritonModels
from orchestrator.triton_stats import MODELS, Snapshot, diff, format_table, scrape
from services.speech_synth import espeak

OUTPUT_RATE = 24_000
CHUNK_MS = 200
TRAILING_SILENCE_S = 1.6


@dataclass
class DemoResult:
    reply_path: Path
    reply_seconds: float
    text: str
    respond_after_ms: float | None
    first_audio_ms: float | None
    stage_table: str


def spoken_question(text: str, trailing_silence_s: float = TRAILING_SILENCE_S) -> np.ndarray:
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
    before = await snapshot(models, metrics_url)
    pcm = spoken_question(text)
    log(f"user: {text!r} ({len(pcm) / INPUT_RATE:.2f} s of espeak-ng speech at 16 kHz)")

    audio: list[np.ndarray] = []

    def keep(delta: AudioDelta) -> None:
        audio.append(delta.samples)

    config = ChainConfig(
        chunk_samples=INPUT_RATE * CHUNK_MS // 1000,
        realtime=realtime,
        speak=SpeakConfig(max_new_tokens=40, temperature=0.8, seed=7),
    )
    turn = await run_turn(models, pcm, config, tokenizer=tokenizer, on_audio=keep)
    respond_after_ms: float | None = None
    if turn.respond_at_s is None:
        log("duplex: no RESPOND_NOW decision; responding at the end of the audio")
    else:
        respond_after_ms = (turn.respond_at_s - (len(pcm) / INPUT_RATE - TRAILING_SILENCE_S)) * 1000
        log(
            f"duplex: RESPOND_NOW after {turn.respond_at_s:.2f} s of audio "
            f"({respond_after_ms:.0f} ms after speech ended)"
        )

    reply = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), reply, OUTPUT_RATE, subtype="PCM_16")
    after = await snapshot(models, metrics_url)
    table = format_table([diff(m, before, after) for m in MODELS])
    await models.close()
    t = turn.timings
    reply_text = tokenizer.decode(turn.token_ids)
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
