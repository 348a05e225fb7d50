"""The in-process half of ``perf.batching``: one streaming step of each stage on the plain torch modules.

For B streams in steady state it times one batched call (what a Triton step runs) against B calls of
one stream each, on one torch thread like the Triton models, and keeps the minimum over repeats
(the machine is shared; the minimum is the least disturbed figure). Steps: encoder one 240 ms chunk
per stream (frontend included, streams old enough to hold their full attention context); duplex two
new frames per stream; backbone one decode token per session (contexts of different lengths);
speech LM one speech token per stream; vocoder one 15-token push per stream. Smoke weights, seeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from services import backbone, duplex, encoder, speech_lm, vocoder
from services.smoke_seeds import BACKBONE_SEED, ENCODER_SEED

CHUNK = 3840
FIRST = 3760
Step = Callable[[], object]


def best_of(repeats: int, step: Step) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def encoder_steps(size: int) -> tuple[Step, Step]:
    model = encoder.build_smoke(ENCODER_SEED)
    pcm = (0.1 * np.random.default_rng(0).standard_normal(16000 * 120)).astype(np.float32)

    def warmed() -> tuple[list[Any], list[int]]:
        streams = [model.new_stream() for _ in range(size)]
        for stream in streams:
            stream.push(pcm[: FIRST + 7 * CHUNK])
        return streams, [FIRST + 7 * CHUNK]

    singles, single_at = warmed()
    batched, batched_at = warmed()

    def alone() -> None:
        start = single_at[0]
        for stream in singles:
            stream.push(pcm[start : start + CHUNK])
        single_at[0] = start + CHUNK

    def together() -> None:
        start = batched_at[0]
        encoder.encode_batch(model, [stream.prepare(pcm[start : start + CHUNK]) for stream in batched])
        batched_at[0] = start + CHUNK

    return alone, together


def duplex_steps(size: int) -> tuple[Step, Step]:
    model = duplex.build_smoke(0)
    hidden = torch.from_numpy(np.random.default_rng(1).standard_normal((2, model.config.llm_dim)).astype(np.float32))
    singles = [model.new_stream() for _ in range(size)]
    batched = [model.new_stream() for _ in range(size)]
    for stream in singles + batched:
        stream.push(torch.cat([hidden] * 8), False)

    def alone() -> None:
        for stream in singles:
            stream.push(hidden, False)

    def together() -> None:
        duplex.score_batch(model, [stream.prepare(hidden, False) for stream in batched])

    return alone, together


def backbone_steps(size: int) -> tuple[Step, Step]:
    model = backbone.build_smoke(BACKBONE_SEED)
    rng = np.random.default_rng(2)

    def sessions() -> list[backbone.Generation]:
        made = []
        for i in range(size):
            session = model.new_session()
            session.append(ids=[int(t) for t in rng.integers(10, 250, size=40 + 25 * i)])
            made.append(backbone.Generation(session, 4000 - 40 - 25 * size, temperature=0.0))
        return made

    singles, batched = sessions(), sessions()

    def alone() -> None:
        for generation in singles:
            generation.take(model.run([generation.prepare()])[0])

    def together() -> None:
        outputs = model.run([generation.prepare() for generation in batched])
        for generation, output in zip(batched, outputs, strict=True):
            generation.take(output)

    return alone, together


def speech_lm_steps(size: int) -> tuple[Step, Step]:
    model = speech_lm.build_smoke(0)
    width = 2 * model.config.llm_hidden_size
    rng = np.random.default_rng(3)

    def streams() -> list[speech_lm.SpeechGeneration]:
        made = []
        for _ in range(size):
            stream = model.new_stream(torch.from_numpy(rng.standard_normal(width).astype(np.float32)))
            stream.push_semantic(torch.from_numpy(rng.standard_normal((5 * 400, width)).astype(np.float32)))
            made.append(speech_lm.SpeechGeneration(stream, 15 * 400))
        return made

    singles, batched = streams(), streams()

    def alone() -> None:
        for generation in singles:
            rows = generation.prepare()
            assert rows is not None
            generation.take(model.run([(generation.stream, rows)])[0])

    def together() -> None:
        work = []
        for generation in batched:
            rows = generation.prepare()
            assert rows is not None
            work.append((generation.stream, rows))
        for generation, logits in zip(batched, model.run(work), strict=True):
            generation.take(logits)

    return alone, together


def vocoder_steps(size: int) -> tuple[Step, Step]:
    model = vocoder.build_smoke(0)
    rng = np.random.default_rng(4)

    def streams() -> list[vocoder.VocoderStream]:
        made = [model.new_stream() for _ in range(size)]
        for stream in made:
            for _ in range(3):
                stream.push(torch.from_numpy(rng.integers(0, 6561, size=15)))
        return made

    singles, batched = streams(), streams()
    tokens = torch.from_numpy(rng.integers(0, 6561, size=15))

    def alone() -> None:
        for stream in singles:
            stream.push(tokens)

    def together() -> None:
        vocoder.push_batch(model, [stream.prepare(tokens) for stream in batched])

    return alone, together


STEPS: dict[str, Callable[[int], tuple[Step, Step]]] = {
    "encoder": encoder_steps,
    "duplex": duplex_steps,
    "backbone": backbone_steps,
    "speech_lm": speech_lm_steps,
    "vocoder": vocoder_steps,
}


def in_process(sizes: list[int], repeats: int = 12) -> list[dict[str, Any]]:
    """Rows like ``perf.batching``'s: per stage and B, the batched step and the per-stream cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with torch.inference_mode():
            for stage, make in STEPS.items():
                for size in sizes:
                    alone, together = make(size)
                    # One untimed step each: a backbone session's first token needs no forward pass.
                    alone()
                    together()
                    single_s = best_of(repeats, alone)
                    batched_s = best_of(repeats, together)
                    rows.append(
                        {
                            "source": "in process",
                            "stage": stage,
                            "streams": size,
                            "step_ms": 1000 * batched_s,
                            "per_stream_ms": 1000 * batched_s / size,
                            "single_per_stream_ms": 1000 * single_s / size,
                        }
                    )
                    print(
                        f"in process {stage:9s} B={size:2d}: batched {1000 * batched_s / size:6.2f} ms/stream, "
                        f"one at a time {1000 * single_s / size:6.2f} ms/stream",
                        flush=True,
                    )
    finally:
        torch.set_num_threads(threads)
    return rows
