"""One batched step of every PyTorch stage at minmo sizes on a GPU: ms per step at B streams, peak memory.

``perf/gpu_check.sh`` runs it (under 8 minutes on one H100/H200, no network: random weights, nothing
downloaded). For each dtype (float32, bfloat16) and batch size (1, 8) it builds each stage at its
``minmo`` preset on the device with random weights, casts it as the adapters serve it
(:func:`services.common.precision.cast_for_serving`: HiFT and CMVN stay float32), opens B streams
and times the batched step the Triton model runs per scheduler step:

- ``encoder``: one 600 ms chunk per stream (``encode_batch``; the fbank frontend is host work, not timed);
- ``duplex``: five backbone states per stream (one 600 ms window, ``score_batch``);
- ``speech_lm``: one speech token per stream (``SpeechLM.run``) after a query and 5 semantic vectors;
- ``vocoder``: one 15-token push per stream (``push_batch``: flow, 10 Euler steps with CFG, HiFT);
- ``backbone``: one decode token per session after a 256-token prompt (``Backbone.run``; the CPU
  profile's PyTorch backbone, for comparison with the engine, which is not built here).

Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps, weights included. The same
code runs on the CPU at smoke sizes (``--device cpu --preset smoke``) so the tests exercise it.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from services.backbone import Backbone, Generation, Qwen2Config
from services.common.precision import cast_for_serving, parse_dtype
from services.duplex import DuplexConfig, DuplexPredictor, score_batch
from services.encoder import EncoderConfig, SpeechEncoder, encode_batch
from services.speech_lm import SpeechGeneration, SpeechLM, SpeechLMConfig
from services.vocoder import Token2Wav, VocoderConfig, push_batch

STAGES = ("encoder", "duplex", "speech_lm", "vocoder", "backbone")
Step = Callable[[], object]


@dataclasses.dataclass(frozen=True)
class Row:
    stage: str
    dtype: str
    streams: int
    ms_per_step: float
    peak_gb: float
    params: int


def _build(cls: type[torch.nn.Module], config: object, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    with torch.device(device):
        module = cls(config)  # type: ignore[call-arg]
    return cast_for_serving(module.eval(), dtype)


def _encoder(model: SpeechEncoder, streams: int) -> Step:
    rng = np.random.default_rng(0)
    states = [model.new_stream() for _ in range(streams)]
    encode_batch(model, [s.prepare((0.1 * rng.standard_normal(s.samples_needed)).astype(np.float32)) for s in states])

    def step() -> object:
        work = [s.prepare((0.1 * rng.standard_normal(s.samples_needed)).astype(np.float32)) for s in states]
        return encode_batch(model, work)

    return step


def _duplex(model: DuplexPredictor, streams: int, device: torch.device) -> Step:
    states = [model.new_stream() for _ in range(streams)]
    hidden = torch.randn(5, model.config.llm_dim, device=device)

    def step() -> object:
        return score_batch(model, [s.prepare(hidden, False) for s in states])

    return step


def _speech_lm(model: SpeechLM, streams: int, device: torch.device) -> Step:
    width = 2 * model.config.llm_hidden_size
    lm_streams = [model.new_stream(torch.randn(width, device=device), seed=i) for i in range(streams)]
    for s in lm_streams:
        s.push_semantic(torch.randn(5, width, device=device))
    generations = [SpeechGeneration(s, 10**6, until_eos=False, temperature=1.0, top_k=25) for s in lm_streams]

    def step() -> object:
        work = [(s, g.prepare()) for s, g in zip(lm_streams, generations, strict=True)]
        ready = [(s, rows) for s, rows in work if rows is not None]
        if len(ready) < len(work):  # a group's 15 tokens are out: feed the next 5 vectors, as the speak path does
            for s in lm_streams:
                s.push_semantic(torch.randn(5, width, device=device))
            ready = [(s, g.prepare()) for s, g in zip(lm_streams, generations, strict=True)]  # type: ignore[misc]
        logits = model.run(ready)  # type: ignore[arg-type]
        return [g.take(lg) for g, lg in zip(generations, logits, strict=True)]

    return step


def _vocoder(model: Token2Wav, streams: int) -> Step:
    rng = np.random.default_rng(0)
    states = [model.new_stream() for _ in range(streams)]

    def step() -> object:
        return push_batch(model, [s.prepare(rng.integers(0, 6561, 15)) for s in states])

    return step


def _backbone(model: Backbone, streams: int) -> Step:
    sessions = [model.new_session() for _ in range(streams)]
    prompt = [i % model.config.vocab_size for i in range(1000, 1256)]
    model.run([s.prepare_append(prompt) for s in sessions])
    generations = [Generation(s, 64, temperature=1.0, top_k=20, seed=i) for i, s in enumerate(sessions)]

    def step() -> object:
        outs = model.run([g.prepare() for g in generations])
        return [g.take(o) for g, o in zip(generations, outs, strict=True)]

    return step


def _configs(preset: str) -> dict[str, object]:
    return {
        "encoder": EncoderConfig.preset(preset),
        "duplex": DuplexConfig.preset(preset),
        "speech_lm": SpeechLMConfig.preset(preset),
        "vocoder": VocoderConfig.preset(preset),
        "backbone": Qwen2Config.preset(preset),
    }


def _steps(stage: str, module: torch.nn.Module, streams: int, device: torch.device) -> Step:
    if isinstance(module, SpeechEncoder):
        return _encoder(module, streams)
    if isinstance(module, DuplexPredictor):
        return _duplex(module, streams, device)
    if isinstance(module, SpeechLM):
        return _speech_lm(module, streams, device)
    if isinstance(module, Token2Wav):
        return _vocoder(module, streams)
    assert isinstance(module, Backbone), stage
    return _backbone(module, streams)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    stage: str, dtype_name: str, batches: list[int], *, preset: str, device: torch.device, steps: int
) -> list[Row]:
    classes = {"encoder": SpeechEncoder, "duplex": DuplexPredictor, "speech_lm": SpeechLM, "vocoder": Token2Wav}
    cls = classes.get(stage, Backbone)
    module = _build(cls, _configs(preset)[stage], device, parse_dtype(dtype_name))
    params = sum(p.numel() for p in module.parameters())
    rows = []
    with torch.inference_mode():
        for streams in batches:
            step = _steps(stage, module, streams, device)
            for _ in range(2):  # warm-up: kernel selection, allocator growth
                step()
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            begin = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            elapsed = (time.perf_counter() - begin) / steps
            peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
            rows.append(Row(stage, dtype_name, streams, 1000 * elapsed, peak, params))
            del step
            gc.collect()
    del module
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def table(rows: list[Row], device_name: str) -> str:
    lines = [
        f"## One batched step per stage, random weights ({device_name})",
        "",
        "| stage | parameters | dtype | streams | ms per step | ms per stream | peak GB |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.stage} | {r.params:,} | {r.dtype} | {r.streams} | {r.ms_per_step:.2f} | "
            f"{r.ms_per_step / r.streams:.2f} | {r.peak_gb:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="minmo", choices=["minmo", "smoke"])
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (after 2 warm-up steps; <= 60)")
    parser.add_argument("--out", type=Path, help="folder for gpu_check.md and gpu_check.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device visible to torch (is this the CPU build of torch?)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows: list[Row] = []
    for dtype_name in args.dtypes.split(","):
        for stage in args.stages.split(","):
            started = time.perf_counter()
            batches = [int(b) for b in args.batches.split(",")]
            rows += measure(stage, dtype_name, batches, preset=args.preset, device=device, steps=args.steps)
            print(f"# {stage} {dtype_name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    text = table(rows, f"{name}, torch {torch.__version__}, preset {args.preset}")
    print(text, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(text)
        payload = {"device": name, "torch": torch.__version__, "rows": [dataclasses.asdict(r) for r in rows]}
        (args.out / "gpu_check.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
