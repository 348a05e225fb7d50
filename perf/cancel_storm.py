"""Interrupt Triton work at random moments, many streams at once, and report whether Triton survived.

Barge-ins stop generations all the time. Triton 2.51 can crash (SIGSEGV in its gRPC handlers) when a
client cancels an RPC while a response of that RPC completes (triton-inference-server/server#8078).
This storm shows it and shows that the orchestrator's way of stopping work does not trigger it:

* ``--mode stop`` (what the orchestrator does): ``ModelStream.cancel`` sends STOP and half-closes;
  unary calls are shielded, so a caller that stops waiting never cancels the RPC;
* ``--mode rpc-cancel`` (what it used to do): cancel the gRPC stream and the unary call.

Each worker loops: a backbone generation interrupted after 0-6 tokens; 30 % of the time an encoder
call abandoned 0-10 ms after it started. ``rpc-cancel`` is meant to crash a Triton: point it at one
you can lose (``make perf`` does not run this module). Exit status 1 when Triton died.

    python -m perf.cancel_storm --mode stop --seconds 240 --workers 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from pathlib import Path

import numpy as np
from tritonclient.utils import InferenceServerException

from minmo_contracts import backbone, encoder
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from orchestrator.triton.errors import TritonStageError
from orchestrator.triton.protocol import to_inputs

GENERATION = backbone.generate_request([1, 2, 3, 4], max_new_tokens=8)
ENCODER_CHUNK = encoder.request(np.zeros(3840, np.float32))


class Tally:
    def __init__(self) -> None:
        self.interrupted = 0
        self.errors: dict[str, int] = {}

    def error(self, exc: Exception) -> None:
        key = str(exc)[:80]
        self.errors[key] = self.errors.get(key, 0) + 1


async def _interrupt_generation(models: TritonModels, rng: random.Random, mode: str) -> None:
    stream = models.open_stream(backbone.NAME)
    responses = stream.request(GENERATION, sequence_id=new_stream_id(), start=True, end=True)
    stop_after, seen = rng.randint(0, 6), 0
    try:
        async for _ in responses:
            seen += 1
            if seen >= stop_after:
                break
    finally:
        if mode == "rpc-cancel":
            stream._call.cancel()  # the old way; reaching into the call on purpose
        await responses.aclose()
        await stream.close()


async def _abandon_encoder_call(models: TritonModels, rng: random.Random, mode: str) -> None:
    sequence_id = new_stream_id()
    if mode == "stop":
        call = asyncio.ensure_future(
            models.infer(encoder.NAME, ENCODER_CHUNK, sequence_id=sequence_id, start=True, end=True)
        )
    else:
        inputs = to_inputs(ENCODER_CHUNK)
        call = asyncio.ensure_future(
            models.client.infer(encoder.NAME, inputs, sequence_id=sequence_id, sequence_start=True, sequence_end=True)
        )
    await asyncio.sleep(rng.random() * 0.01)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError, TritonStageError, InferenceServerException):
        await call


async def _worker(models: TritonModels, seed: int, mode: str, until: float, tally: Tally) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        try:
            await _interrupt_generation(models, rng, mode)
            tally.interrupted += 1
            if rng.random() < 0.3:
                await _abandon_encoder_call(models, rng, mode)
        except (TritonStageError, InferenceServerException) as exc:
            tally.error(exc)
            if "failed to connect" in str(exc):
                return  # Triton is gone


async def storm(url: str, mode: str, seconds: float, workers: int) -> dict[str, object]:
    models = TritonModels(url, deadline_seconds=10)
    tally = Tally()
    started = time.monotonic()
    await asyncio.gather(*(_worker(models, seed, mode, started + seconds, tally) for seed in range(workers)))
    try:
        alive = bool(await models.client.is_server_live())
    except InferenceServerException:
        alive = False
    await models.close()
    return {
        "mode": mode,
        "seconds": round(time.monotonic() - started, 1),
        "workers": workers,
        "interrupted_generations": tally.interrupted,
        "errors": tally.errors,
        "triton_alive": alive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--mode", choices=["stop", "rpc-cancel"], default="stop")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("out/perf/cancel_storm.json"))
    args = parser.parse_args()
    result = asyncio.run(storm(args.url, args.mode, args.seconds, args.workers))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    raise SystemExit(0 if result["triton_alive"] else 1)


if __name__ == "__main__":
    main()
