"""Per-stage latency of every streaming path, as direct Triton calls against the running stack.

``make perf`` (or ``python -m perf.stage_latency``) measures, over repeated runs:
encoder per 240 ms chunk, backbone prefill / time to first token / time between tokens, duplex per
frame batch, speech_lm first token and per token, vocoder per 15-token chunk, and the speak path's
time from the respond decision to the first audio with its real-time factor. It prints a Markdown
table and writes JSON, so the README's figures can be reproduced with one command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import numpy as np

from minmo_contracts import backbone, duplex, encoder, speech_lm, vocoder
from orchestrator.stages.ids import new_stream_id
from orchestrator.stages.speak import AudioDelta, SpeakConfig, SpeakPath
from orchestrator.triton.client import TritonModels
from services.backbone import ChatPrompt, SmokeByteTokenizer

LLM_DIM = 256
Samples = dict[str, list[float]]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def _timed(samples: Samples, name: str, call: Awaitable[object]) -> object:
    """Await ``call`` (a coroutine does not start before it is awaited) and record its duration."""
    started = time.perf_counter()
    result = await call
    samples.setdefault(name, []).append(_ms(started))
    return result


async def bench_encoder(models: TritonModels, samples: Samples, rng: np.random.Generator) -> None:
    pcm = (0.05 * rng.standard_normal(16000 * 5)).astype(np.float32)
    stream_id, chunk = new_stream_id(), 3840  # 240 ms: one encoder chunk
    for index, offset in enumerate(range(0, len(pcm), chunk)):
        piece, last = pcm[offset : offset + chunk], offset + chunk >= len(pcm)
        await _timed(
            samples,
            "encoder: 240 ms chunk",
            models.infer(encoder.NAME, encoder.request(piece), sequence_id=stream_id, start=index == 0, end=last),
        )


async def bench_backbone_and_duplex(models: TritonModels, samples: Samples, rng: np.random.Generator) -> None:
    session, stream = new_stream_id(), models.open_stream(backbone.NAME)
    speech = rng.standard_normal((50, LLM_DIM)).astype(np.float32)
    started = time.perf_counter()
    async for _ in stream.request(backbone.append_request(speech=speech), sequence_id=session, start=True):
        pass
    samples.setdefault("backbone: prefill 50 speech frames", []).append(_ms(started))
    duplex_id = new_stream_id()
    for index in range(10):
        hidden = rng.standard_normal((2, LLM_DIM)).astype(np.float32)
        await _timed(
            samples,
            "duplex: 2 frames (240 ms)",
            models.infer(duplex.NAME, duplex.request(hidden, speaking=False), sequence_id=duplex_id, start=index == 0),
        )
    started = last = time.perf_counter()
    count = 0
    generation = backbone.generate_request(max_new_tokens=30)
    async for out in stream.request(generation, sequence_id=session, end=True):
        if backbone.BackboneOutput.read(out).token_id is None:
            continue
        now = time.perf_counter()
        name = "backbone: first token" if count == 0 else "backbone: next token"
        samples.setdefault(name, []).append((now - (started if count == 0 else last)) * 1000)
        last, count = now, count + 1
    await stream.close()


async def bench_speech_lm(models: TritonModels, samples: Samples, rng: np.random.Generator) -> None:
    stream, stream_id = models.open_stream(speech_lm.NAME), new_stream_id()
    for group in range(4):
        semantic = rng.standard_normal((5, 2 * LLM_DIM)).astype(np.float32)
        query = rng.standard_normal(2 * LLM_DIM).astype(np.float32) if group == 0 else None
        request = speech_lm.request(semantic, query=query)
        started, first = time.perf_counter(), None
        async for _ in stream.request(request, sequence_id=stream_id, start=group == 0):
            first = first if first is not None else _ms(started)
        samples.setdefault("speech_lm: first token of a group", []).append(first or float("nan"))
        samples.setdefault("speech_lm: 15 tokens (one group)", []).append(_ms(started))
    await stream.close()


async def bench_vocoder(models: TritonModels, samples: Samples, rng: np.random.Generator) -> None:
    stream, stream_id = models.open_stream(vocoder.NAME), new_stream_id()
    for index in range(6):
        tokens = vocoder.request(rng.integers(0, 6561, 15))
        started = time.perf_counter()
        async for _ in stream.request(tokens, sequence_id=stream_id, start=index == 0, end=index == 5):
            pass
        samples.setdefault("vocoder: 15 tokens (600 ms audio)", []).append(_ms(started))
    await stream.close()


async def bench_speak_path(models: TritonModels, samples: Samples, rng: np.random.Generator) -> None:
    """Respond decision -> first audio byte, and the real-time factor of the whole reply."""
    prompt = ChatPrompt(SmokeByteTokenizer())
    session, stream = new_stream_id(), models.open_stream(backbone.NAME)
    speech = rng.standard_normal((20, LLM_DIM)).astype(np.float32)
    opening = backbone.append_request(prompt.user_speech_open(), speech)
    async for _ in stream.request(opening, sequence_id=session, start=True):
        pass
    speak = SpeakPath(
        models,
        session,
        prompt_ids=prompt.user_speech_close() + prompt.assistant_open(),
        user_embedding=speech.mean(axis=0),
        decode=SmokeByteTokenizer().decode,
        config=SpeakConfig(max_new_tokens=30, temperature=0.8, seed=int(rng.integers(1 << 30))),
    )
    started, audio_s = time.perf_counter(), 0.0
    async for event in speak.run():
        if isinstance(event, AudioDelta):
            audio_s += event.samples.size / 24_000
    wall_s = time.perf_counter() - started
    samples.setdefault("speak path: decision -> first audio", []).append(speak.timings.first_audio_ms or float("nan"))
    samples.setdefault("speak path: real-time factor (wall / audio)", []).append(wall_s / max(audio_s, 1e-9))
    async for _ in stream.request(backbone.end_request(), sequence_id=session, end=True):
        pass
    await stream.close()


def summarise(samples: Samples) -> list[dict[str, float | str | int]]:
    rows: list[dict[str, float | str | int]] = []
    for name, values in samples.items():
        array = np.array(values, dtype=np.float64)
        rows.append(
            {
                "stage": name,
                "n": int(array.size),
                "p50": float(np.percentile(array, 50)),
                "p95": float(np.percentile(array, 95)),
                "mean": float(array.mean()),
            }
        )
    return rows


def markdown(rows: list[dict[str, float | str | int]]) -> str:
    lines = ["| stage | n | p50 | p95 | mean |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        unit = "" if "factor" in str(row["stage"]) else " ms"
        figures = " | ".join(f"{row[key]:.2f}{unit}" for key in ("p50", "p95", "mean"))
        lines.append(f"| {row['stage']} | {row['n']} | {figures} |")
    return "\n".join(lines)


async def run(triton_url: str, repeats: int) -> list[dict[str, float | str | int]]:
    models, rng = TritonModels(triton_url), np.random.default_rng(0)
    samples: Samples = {}
    for _ in range(repeats):
        await bench_encoder(models, samples, rng)
        await bench_backbone_and_duplex(models, samples, rng)
        await bench_speech_lm(models, samples, rng)
        await bench_vocoder(models, samples, rng)
        await bench_speak_path(models, samples, rng)
    await models.close()
    return summarise(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triton", default="127.0.0.1:8001")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("out/perf/stage_latency.json"))
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.triton, args.repeats))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version()}
    args.out.write_text(json.dumps({"machine": machine, "repeats": args.repeats, "rows": rows}, indent=2))
    print(markdown(rows))
    print(f"\n(JSON: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
