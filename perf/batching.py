"""Batching benchmark: what one step costs each model for B streams at once, through Triton and in process.

``python -m perf.batching`` (the local stack's Triton must be up: ``make up``). For every stage and
B in ``--sizes`` (1, 2, 4, 8, 16) it runs B streams at once, each as fast as its model answers
(closed loop), and reads the model's own counters from Triton's /metrics: busy seconds
(``minmo_compute_seconds_total``) and the ``minmo_batch_size`` histogram (kernel calls and the
streams they served). So the figures are the model's cost, not the client's: *step ms* is the busy
time per batched step, *per stream ms* the busy time per stream-step, and *gain* how much cheaper a
stream-step is than at B = 1. ``--in-process`` adds the same steps timed on the plain torch modules
(``services.*``), batched against one call per stream, without Triton (``perf.batching_kernels``).
Writes ``batching.json``, ``batching.md`` and ``batching.png`` under ``--out``.

Work per stream (smoke profile): encoder 12 chunks of 240 ms; duplex 20 requests of 2 frames;
backbone a 20-token prompt then 48 greedy tokens; speech LM 4 groups (60 tokens); vocoder 6 pushes
of 15 tokens. A step of the encoder or duplex is one ``execute()`` of Triton's batch; of the others,
one iteration of the model's step scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from minmo_contracts import backbone, duplex, encoder, speech_lm, vocoder
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from orchestrator.triton_stats import scrape

LLM_DIM = 256
CHUNK = 3840  # 240 ms at 16 kHz: one smoke encoder chunk
STAGES = ("encoder", "duplex", "backbone", "speech_lm", "vocoder")
Stream = Callable[[TritonModels, int], Awaitable[None]]


async def encoder_stream(models: TritonModels, seed: int) -> None:
    pcm = (0.05 * np.random.default_rng(seed).standard_normal(CHUNK * 12 + 3760)).astype(np.float32)
    sequence = new_stream_id()
    bounds = [0, 3760, *range(3760 + CHUNK, pcm.size + 1, CHUNK)]
    for index, (begin, end) in enumerate(itertools.pairwise(bounds)):
        last = end >= pcm.size
        chunk = encoder.request(pcm[begin:end])
        await models.infer(encoder.NAME, chunk, sequence_id=sequence, start=index == 0, end=last)


async def duplex_stream(models: TritonModels, seed: int) -> None:
    hidden = np.random.default_rng(seed).standard_normal((40, LLM_DIM)).astype(np.float32)
    sequence = new_stream_id()
    for index in range(20):
        frames = duplex.request(hidden[2 * index : 2 * index + 2], speaking=False)
        await models.infer(duplex.NAME, frames, sequence_id=sequence, start=index == 0, end=index == 19)


async def backbone_stream(models: TritonModels, seed: int) -> None:
    stream, sequence = models.open_stream(backbone.NAME), new_stream_id()
    prompt = np.random.default_rng(seed).integers(10, 250, size=20)
    request = backbone.generate_request(prompt, max_new_tokens=48, temperature=0.0)
    async for _ in stream.request(request, sequence_id=sequence, start=True):
        pass
    async for _ in stream.request(backbone.end_request(), sequence_id=sequence, end=True):
        pass
    await stream.close()


async def speech_lm_stream(models: TritonModels, seed: int) -> None:
    rng = np.random.default_rng(seed)
    stream, sequence = models.open_stream(speech_lm.NAME), new_stream_id()
    for group in range(4):
        semantic = rng.standard_normal((5, 2 * LLM_DIM)).astype(np.float32)
        query = rng.standard_normal(2 * LLM_DIM).astype(np.float32) if group == 0 else None
        request = speech_lm.request(semantic, query=query)
        async for _ in stream.request(request, sequence_id=sequence, start=group == 0, end=group == 3):
            pass
    await stream.close()


async def vocoder_stream(models: TritonModels, seed: int) -> None:
    rng = np.random.default_rng(seed)
    stream, sequence = models.open_stream(vocoder.NAME), new_stream_id()
    for push in range(6):
        tokens = vocoder.request(rng.integers(0, 6561, size=15))
        async for _ in stream.request(tokens, sequence_id=sequence, start=push == 0, end=push == 5):
            pass
    await stream.close()


WORKLOADS: dict[str, Stream] = {
    "encoder": encoder_stream,
    "duplex": duplex_stream,
    "backbone": backbone_stream,
    "speech_lm": speech_lm_stream,
    "vocoder": vocoder_stream,
}


async def measure(models: TritonModels, metrics_url: str, stage: str, size: int, rounds: int) -> dict[str, Any]:
    """``rounds`` times B streams at once; the model's busy time and batches over all of them."""
    work_before, batches_before = scrape(metrics_url)
    started = time.perf_counter()
    for round_index in range(rounds):
        await asyncio.gather(*(WORKLOADS[stage](models, 1000 * round_index + i) for i in range(size)))
    wall = time.perf_counter() - started
    work_after, batches_after = scrape(metrics_url)
    busy = work_after[stage][0] - work_before[stage][0]
    steps = batches_after[stage][0] - batches_before[stage][0]
    served = batches_after[stage][1] - batches_before[stage][1]
    return {
        "stage": stage,
        "streams": size,
        "steps": int(steps),
        "mean_batch": served / steps if steps else 0.0,
        "step_ms": 1000 * busy / steps if steps else 0.0,
        "per_stream_ms": 1000 * busy / served if served else 0.0,
        "wall_s": wall,
    }


async def through_triton(url: str, metrics_url: str, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    models = TritonModels(url)
    rows = []
    try:
        for stage in STAGES:
            await measure(models, metrics_url, stage, 1, 1)  # warm-up: first-call costs are not batching's
            for size in sizes:
                row = await measure(models, metrics_url, stage, size, rounds)
                rows.append(row)
                print(
                    f"triton {stage:9s} B={size:2d}: {row['mean_batch']:5.2f} streams/step, "
                    f"step {row['step_ms']:7.2f} ms, per stream {row['per_stream_ms']:6.2f} ms",
                    flush=True,
                )
    finally:
        await models.close()
    add_gain(rows)
    return rows


def add_gain(rows: list[dict[str, Any]]) -> None:
    """``gain``: per-stream cost at B = 1 over per-stream cost at this B (the same stage and source)."""
    single = {(r.get("source", "triton"), r["stage"]): r["per_stream_ms"] for r in rows if r["streams"] == 1}
    for row in rows:
        base = single.get((row.get("source", "triton"), row["stage"]))
        row["gain"] = base / row["per_stream_ms"] if base and row["per_stream_ms"] else None


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| source | stage | B | streams/step | step ms | per stream ms | gain vs B=1 | one at a time, ms/stream |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["triton"] + result.get("in_process", []):
        gain = f"{row['gain']:.2f}x" if row.get("gain") else "-"
        batch = f"{row['mean_batch']:.2f}" if "mean_batch" in row else str(row["streams"])
        single = f"{row['single_per_stream_ms']:.2f}" if "single_per_stream_ms" in row else "-"
        lines.append(
            f"| {row.get('source', 'triton')} | {row['stage']} | {row['streams']} | {batch} | "
            f"{row['step_ms']:.2f} | {row['per_stream_ms']:.2f} | {gain} | {single} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for source, style in (("triton", "-o"), ("in process", "--x")):
        rows = [r for r in result["triton"] + result.get("in_process", []) if r.get("source", "triton") == source]
        for stage in STAGES:
            points = sorted((r["streams"], r["per_stream_ms"]) for r in rows if r["stage"] == stage)
            if points:
                ax.plot(*zip(*points, strict=True), style, label=f"{stage} ({source})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("streams at once (B)")
    ax.set_ylabel("busy ms per stream-step")
    ax.set_title("Per-stream cost of one step vs batch size (smoke, CPU)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "batching.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triton", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--triton-metrics", default="http://127.0.0.1:8002/metrics", help="Triton metrics URL")
    parser.add_argument("--sizes", default="1,2,4,8,16", help="stream counts B")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of B streams per measurement")
    parser.add_argument("--in-process", action="store_true", help="also time the torch modules without Triton")
    parser.add_argument("--out", type=Path, default=Path("out/perf/batching"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "triton": asyncio.run(through_triton(args.triton, args.triton_metrics, sizes, args.rounds)),
    }
    if args.in_process:
        from perf.batching_kernels import in_process

        rows = in_process(sizes)
        add_gain(rows)
        result["in_process"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batching.json").write_text(json.dumps(result, indent=2))
    (args.out / "batching.md").write_text(markdown(result))
    plot(result, args.out)
    print(markdown(result))
    print(f"wrote {args.out}/batching.json, batching.md, batching.png")


if __name__ == "__main__":
    main()
