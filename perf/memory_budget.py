"""Memory and latency budget of the ``minmo`` sizes on one NVIDIA L20 (48 GB, 864 GB/s).

``python -m perf.memory_budget [--out budget.md]`` builds every stage on the ``meta`` device (exact
parameter counts, no memory), then derives: weights per stage at bf16 and int8 weight-only,
per-session state (backbone and speech-LM KV caches, encoder/duplex/vocoder stream caches),
activation estimates, the sessions one L20 holds with all five models on it, and the
weight-bandwidth floor per token next to the MinMo paper's L20 step latencies. Every assumption
is a named constant or a table row; nothing here was measured on a GPU.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from services.backbone import Backbone, Qwen2Config
from services.duplex.config import DuplexConfig
from services.duplex.model import DuplexPredictor
from services.encoder.config import EncoderConfig
from services.encoder.model import SpeechEncoder
from services.gpu_profile.values import GpuValues
from services.speech_lm.model import SpeechLM, SpeechLMConfig
from services.vocoder.config import VocoderConfig
from services.vocoder.model import Token2Wav

GPU_BYTES = 48e9  # L20: 48 GB GDDR6
GPU_BANDWIDTH = 864e9  # bytes/s
RESERVE = 0.05  # of GPU memory kept free: allocator fragmentation, TensorRT workspace slack
CUDA_CONTEXT = 0.5e9  # per GPU process (Triton's TensorRT-LLM backend, each Python KIND_GPU instance): assumed
BF16, INT8, FP32 = 2, 1, 4
FRAMES_PER_S = 1000 / 120  # encoder embeddings (backbone positions) per second of user audio
TEXT_PER_S = 5 / 0.6  # backbone text tokens per second of assistant speech (5 per 15 speech tokens)
SPEECH_LM_PER_S = 20 / 0.6  # speech-LM positions per second of speech (5 semantic + 15 tokens per 600 ms)
SPEAKING_TURN_S = 30  # longest assistant turn the speech LM's per-turn KV is sized for
SPEAKING_SHARE = 0.5  # sessions speaking at any moment (vocoder + speech-LM state exist only then)
VALUES = Path(__file__).resolve().parents[1] / "services" / "gpu_profile" / "values-l20.yaml"
PAPER_L20_MS = {"duplex": 250, "backbone": 150, "speech_lm": 70, "vocoder": 130}
STAGES = ("encoder", "backbone", "duplex", "speech_lm", "vocoder")


@dataclass(frozen=True)
class StageWeights:
    params: int
    linear_params: int  # in nn.Linear weights: what int8 weight-only quantises

    @property
    def bf16_bytes(self) -> int:
        return self.params * BF16

    @property
    def int8_bytes(self) -> int:
        """Linear weights at one byte (per-channel scales neglected), everything else kept in bf16."""
        return self.linear_params * INT8 + (self.params - self.linear_params) * BF16


def build_on_meta() -> dict[str, nn.Module]:
    with torch.device("meta"):
        return {
            "encoder": SpeechEncoder(EncoderConfig.preset("minmo")),
            "backbone": Backbone(Qwen2Config.preset("minmo")),
            "duplex": DuplexPredictor(DuplexConfig.preset("minmo")),
            "speech_lm": SpeechLM(SpeechLMConfig.preset("minmo")),
            "vocoder": Token2Wav(VocoderConfig.preset("minmo")),
        }


def count(module: nn.Module) -> StageWeights:
    linear = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    return StageWeights(params=sum(p.numel() for p in module.parameters()), linear_params=linear)


def kv_bytes_per_token(config: Qwen2Config, bytes_per_value: int = BF16) -> int:
    """K and V of every layer: layers x kv_heads x head_dim x 2 x bytes."""
    return config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2 * bytes_per_value


def encoder_state_bytes(c: EncoderConfig, bytes_per_value: int = BF16) -> int:
    """Per stream: K/V of the left context in every SAN-M block plus the projector's kept frames."""
    context = max(c.left_chunks * c.chunk_frames, c.kernel_size - 1)
    keep = c.left_chunks * c.chunk_frames // c.projector_stride
    return (c.num_blocks * 2 * c.d_model * context + c.projector_layers * 2 * c.llm_dim * keep) * bytes_per_value


def duplex_state_bytes(c: DuplexConfig, bytes_per_value: int = BF16) -> int:
    """Per stream: the rolling window of backbone states (window - 1 frames)."""
    return (c.window - 1) * c.llm_dim * bytes_per_value


def vocoder_state_bytes(c: VocoderConfig, bytes_per_value: int = BF16) -> int:
    """Per speaking stream: the flow estimator's attention K/V for every block, Euler step and CFG branch."""
    f = c.flow
    blocks = f.estimator_blocks * (f.estimator_mid_blocks + 2)
    frames = f.left_chunks * f.chunk_size * f.token_mel_ratio
    return blocks * f.n_timesteps * 2 * 2 * f.estimator_heads * f.estimator_head_dim * frames * bytes_per_value


def step_activation_bytes(config: Qwen2Config, tokens: int) -> int:
    """One step's live activations: q/k/v, the two FFN projections, residual + normed copies (bf16)."""
    qkv = config.hidden_size + 2 * config.num_key_value_heads * config.head_dim
    return tokens * (qkv + 2 * config.intermediate_size + 2 * config.hidden_size) * BF16


@dataclass(frozen=True)
class Budget:
    weights: dict[str, StageWeights]
    kv_token: int
    speech_lm_kv_token: int
    session_fixed: int  # encoder + duplex stream state
    speaking_state: int  # speech-LM turn KV + vocoder stream state
    activations: dict[str, int]
    overhead: int  # CUDA contexts
    instances: dict[str, int]
    token2wav_params: int  # weights one 15-token chunk reads: flow encoder + HiFT once, estimator per Euler step


def make_budget(values: GpuValues) -> Budget:
    """Instance counts and the engine's step size come from the deployment's values file."""
    instances = {stage: values.instance_count(stage) for stage in STAGES}
    modules = build_on_meta()
    vocoder = modules["vocoder"]
    assert isinstance(vocoder, Token2Wav)
    estimator = sum(p.numel() for p in vocoder.flow.decoder.parameters())
    token2wav = (
        sum(p.numel() for p in vocoder.parameters()) + (VocoderConfig.preset("minmo").flow.n_timesteps - 1) * estimator
    )
    backbone_cfg = Qwen2Config.preset("minmo")
    lm_cfg = SpeechLMConfig.preset("minmo")
    lm_kv = kv_bytes_per_token(lm_cfg.body)
    speaking = int(lm_kv * SPEECH_LM_PER_S * SPEAKING_TURN_S) + vocoder_state_bytes(VocoderConfig.preset("minmo"))
    activations = {
        "backbone": step_activation_bytes(backbone_cfg, values.max_num_tokens),
        # The engine's p-tuning input sized for the whole in-flight batch (counted as if preallocated).
        "prompt_table": values.max_prompt_embedding_table_size * backbone_cfg.hidden_size * BF16,
        "speech_lm": instances["speech_lm"] * step_activation_bytes(lm_cfg.body, 21),
        "encoder": instances["encoder"] * 100_000_000,  # 600 ms chunk through 32 blocks: estimate
        "duplex": instances["duplex"] * 10_000_000,
        "vocoder": instances["vocoder"] * 300_000_000,  # 2 CFG x 150 mel frames + HiFT at 24 kHz: estimate
    }
    return Budget(
        weights={name: count(module) for name, module in modules.items()},
        kv_token=kv_bytes_per_token(backbone_cfg),
        speech_lm_kv_token=lm_kv,
        session_fixed=encoder_state_bytes(EncoderConfig.preset("minmo"))
        + duplex_state_bytes(DuplexConfig.preset("minmo")),
        speaking_state=speaking,
        activations=activations,
        # The engine process, each KIND_GPU instance and each backbone BLS instance (it moves the
        # prompt table and hidden states through CUDA memory).
        overhead=int(CUDA_CONTEXT * (1 + sum(instances.values()))),
        token2wav_params=token2wav,
        instances=instances,
    )


@dataclass(frozen=True)
class Capacity:
    sessions: int
    free_bytes: float  # for all sessions' state, after weights, activations and CUDA contexts
    kv_fraction: float  # kv_cache_free_gpu_mem_fraction that gives the backbone exactly its sessions' KV


def sessions_per_gpu(b: Budget, *, context: int, backbone_int8: bool) -> Capacity:
    """Sessions whose whole state fits beside the weights, each with a full ``context`` of KV.

    TensorRT-LLM sizes its KV pool as a fraction of the memory free after its engine loads, which
    still includes what the other four models need: the fraction is derived here, not guessed.
    """
    backbone = b.weights["backbone"].int8_bytes if backbone_int8 else b.weights["backbone"].bf16_bytes
    weights = backbone + sum(w.bf16_bytes for n, w in b.weights.items() if n != "backbone")
    usable = GPU_BYTES * (1 - RESERVE)
    free = usable - weights - sum(b.activations.values()) - b.overhead
    per_session = context * b.kv_token + b.session_fixed + SPEAKING_SHARE * b.speaking_state
    sessions = int(free // per_session)
    after_engine = usable - backbone - b.activations["backbone"] - b.activations["prompt_table"] - CUDA_CONTEXT
    return Capacity(sessions, free, sessions * context * b.kv_token / after_engine)


def floor_ms(nbytes: float) -> float:
    return nbytes / GPU_BANDWIDTH * 1000


def ms(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def render(b: Budget) -> str:
    w = b.weights
    lines = ["## Memory and latency budget: minmo sizes on one L20 (48 GB, 864 GB/s)", ""]
    lines += [
        "### Weights per stage",
        "",
        "| stage | parameters | bf16 GB | int8 weight-only GB |",
        "|---|---:|---:|---:|",
    ]
    for name in STAGES:
        lines.append(f"| {name} | {w[name].params:,} | {gb(w[name].bf16_bytes)} | {gb(w[name].int8_bytes)} |")
    total = sum(x.params for x in w.values())
    lines.append(
        f"| **all five** | {total:,} | {gb(sum(x.bf16_bytes for x in w.values()))} | "
        f"{gb(sum(x.int8_bytes for x in w.values()))} |"
    )
    per_s_listen = b.kv_token * FRAMES_PER_S
    per_s_both = b.kv_token * (FRAMES_PER_S + TEXT_PER_S)
    lines += [
        "",
        "### Per-session state (bf16)",
        "",
        "| item | size |",
        "|---|---:|",
        f"| backbone KV per position (28 layers x 4 KV heads x 128 x 2 x 2 B) | {b.kv_token:,} B |",
        f"| backbone KV per second, listening ({FRAMES_PER_S:.2f} positions/s) | {mb(per_s_listen)} MB |",
        f"| backbone KV per second, user audio + assistant text ({FRAMES_PER_S + TEXT_PER_S:.2f}/s) | "
        f"{mb(per_s_both)} MB |",
    ]
    for ctx in (4096, 8192, 32768):
        lines.append(f"| backbone KV at a {ctx // 1024}k context | {gb(ctx * b.kv_token)} GB |")
    lines += [
        f"| speech-LM KV per position (24 x 2 x 64 x 2 x 2 B) | {b.speech_lm_kv_token:,} B |",
        f"| speech LM, one {SPEAKING_TURN_S} s turn ({SPEECH_LM_PER_S:.1f} positions/s) | "
        f"{mb(b.speech_lm_kv_token * SPEECH_LM_PER_S * SPEAKING_TURN_S)} MB |",
        f"| vocoder stream (flow estimator K/V, 100 frames x 56 blocks x 10 steps x 2 CFG) | "
        f"{mb(vocoder_state_bytes(VocoderConfig.preset('minmo')))} MB |",
        f"| encoder + duplex streams | {mb(b.session_fixed)} MB |",
    ]
    lines += ["", "### Activations and fixed overheads (estimates)", "", "| item | GB |", "|---|---:|"]
    for name, nbytes in b.activations.items():
        if name == "prompt_table":
            label = "backbone prompt_embedding_table (max_prompt_embedding_table_size x 3584 x 2 B)"
        elif name == "backbone":
            label = "backbone activations (engine, one max_num_tokens step)"
        else:
            label = f"{name} activations ({b.instances[name]} instance(s))"
        lines.append(f"| {label} | {gb(nbytes)} |")
    lines.append(
        f"| CUDA contexts ({b.overhead / CUDA_CONTEXT:.0f} processes x {gb(CUDA_CONTEXT)} GB) | {gb(b.overhead)} |"
    )
    lines += [
        "",
        "### Sessions per L20 (all five models on one GPU)",
        "",
        "| backbone weights | context cap | GB left for session state | sessions (memory) | "
        "kv_cache_free_gpu_mem_fraction |",
        "|---|---:|---:|---:|---:|",
    ]
    for int8 in (False, True):
        for ctx in (4096, 8192):
            cap = sessions_per_gpu(b, context=ctx, backbone_int8=int8)
            lines.append(
                f"| {'int8' if int8 else 'bf16'} | {ctx // 1024}k | {gb(cap.free_bytes)} | {cap.sessions} | "
                f"{cap.kv_fraction:.2f} |"
            )
    lines += [
        "",
        "### Bandwidth floor per step (weights read once per step) vs the paper's L20 figures",
        "",
        "| step | paper L20 ms | floor bf16 ms | floor int8 ms |",
        "|---|---:|---:|---:|",
    ]
    lm = w["speech_lm"]
    steps = [
        ("duplex decision", "duplex", w["duplex"].bf16_bytes, w["duplex"].int8_bytes),
        ("backbone, 5 tokens", "backbone", 5 * w["backbone"].bf16_bytes, 5 * w["backbone"].int8_bytes),
        ("speech LM, 15 tokens", "speech_lm", 15 * lm.bf16_bytes, 15 * lm.int8_bytes),
        ("token2wav, one 15-token chunk", "vocoder", b.token2wav_params * BF16, b.token2wav_params * INT8),
    ]
    for label, key, bf16_bytes, int8_bytes in steps:
        lines.append(f"| {label} | {PAPER_L20_MS[key]} | {ms(floor_ms(bf16_bytes))} | {ms(floor_ms(int8_bytes))} |")
    lines.append(
        f"| backbone, per token | | {ms(floor_ms(w['backbone'].bf16_bytes))} | "
        f"{ms(floor_ms(w['backbone'].int8_bytes))} |"
    )
    lines.append(f"| speech LM, per token | | {ms(floor_ms(lm.bf16_bytes))} | {ms(floor_ms(lm.int8_bytes))} |")
    row = sessions_per_gpu(b, context=4096, backbone_int8=False)
    step = floor_ms(w["backbone"].bf16_bytes + row.sessions * 4096 * b.kv_token)
    lines += [
        "",
        *ASSUMPTIONS,
        "",
        f"Session counts are memory bounds. Decode bandwidth is not the limit before them: one step for a batch of "
        f"all {row.sessions} bf16/4k sessions reads weights + their KV in {step:.0f} ms, against the 120 ms that 5 "
        "tokens per 600 ms allow. Prefill, encoder and token2wav compute were not measured.",
    ]
    return "\n".join(lines) + "\n"


ASSUMPTIONS = [
    "Assumptions: 48e9 B of GPU memory with 5% kept free; one CUDA context of 0.5 GB per GPU process "
    "(the TensorRT-LLM backend, each KIND_GPU Python instance and each backbone BLS instance of the values file); "
    "every stage in bf16 except where int8 weight-only is named (nn.Linear weights at 1 byte, scales neglected); "
    f"a session's backbone context capped at the engine's max_seq_len (longer ones are truncated); "
    f"{SPEAKING_SHARE:.0%} of sessions speaking at once; a speaking session holds a {SPEAKING_TURN_S} s "
    "speech-LM turn and one vocoder stream; the listen fork shares its prefix KV blocks (KV-cache reuse). "
    "Activation rows are estimates (backbone: the engine's max_num_tokens=8192 step; encoder/vocoder: rounded up). "
    "Floors divide the weight bytes one step reads by 864 GB/s: KV reads, compute, launch and batching are "
    "ignored, so real step times are higher; the duplex and token2wav steps are compute-bound, so their floors "
    "say only that weight traffic is not their limit. Nothing here was measured on a GPU.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memory_budget", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--values", type=Path, default=VALUES, help="the GPU values file (instances, max_num_tokens)")
    args = parser.parse_args(argv)
    text = render(make_budget(GpuValues.load(args.values)))
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
