"""Memory and compute budget of the ``minmo`` sizes on one NVIDIA L20 (48 GB, 864 GB/s).

``python -m perf.memory_budget [--out budget.md]`` builds every stage on the ``meta`` device (exact
parameter counts, no memory), then derives: weights per stage at bf16, int8 weight-only and as the
generated repository serves them, per-session state (backbone and speech-LM KV caches,
encoder/duplex/vocoder stream caches), the activations of the batched steps, and the sessions one
L20 holds with all five models on it: the smaller of a memory bound and a batched-compute bound,
each row saying which one applies. Every assumption is a named constant or a table row; these are
estimates, and nothing here was measured on a GPU.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from services.backbone import Backbone, Qwen2Config
from services.duplex.config import DuplexConfig
from services.duplex.model import DuplexPredictor
from services.encoder.config import EncoderConfig
from services.encoder.model import SpeechEncoder
from services.gpu_profile.values import STEP_SCHEDULED, GpuValues
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
# The four KIND_GPU stages as served: each adapter casts its stage to the values file's stage_dtype
# (services/triton/precision.py) except the parts a stage keeps in float32 (FLOAT32_PARTS: the vocoder's
# HiFT; the encoder's CMVN holds buffers only), and each Python instance is its own process with its own copy.
DTYPE_BYTES = {"float32": FP32, "bfloat16": BF16, "float16": BF16}
UNARY_BATCH = 16  # encoder/duplex: the templates' max_batch_size, the requests one execute() batches
VALUES = Path(__file__).resolve().parents[1] / "services" / "gpu_profile" / "values-l20.yaml"
PAPER_L20_MS = {"duplex": 250, "backbone": 150, "speech_lm": 70, "vocoder": 130}
STAGES = ("encoder", "backbone", "duplex", "speech_lm", "vocoder")

# Compute model of a batched step (all estimates; see ASSUMPTIONS).
WINDOW_MS = 600  # one speech group: 5 backbone tokens, 15 speech-LM tokens, one token2wav chunk, one encoder chunk
REALTIME_LOAD = 0.7  # a stage's work per window must fit in this share of it (the rest absorbs queueing)
PEAK_FLOPS = {BF16: 119.5e12, FP32: 59.8e12}  # L20 dense tensor-core bf16; fp32 without TF32 (PyTorch's default)
MATMUL_EFFICIENCY = 0.5  # share of the peak a batched step reaches
BACKBONE_STEPS = 5  # engine decode steps per window; listen prefills (5 rows a session) ride along in flight
HOST_US_PER_KERNEL = 5.0  # eager PyTorch: dispatch + launch of one kernel-launching op
HOST_US_PER_VIEW = 1.4  # eager PyTorch: one view-only op
HOST_US_PER_SYNC = 15.0  # one .item()/.cpu() round trip after the queue drained
GPU_US_PER_KERNEL = 2.0  # the shortest a kernel occupies the GPU
BLS_MS_PER_RESPONSE = 0.3  # backbone Python model: one executor response in, one of ours out


@dataclass(frozen=True)
class StageWeights:
    params: int
    linear_params: int  # in nn.Linear weights: what int8 weight-only quantises

    @property
    def bf16_bytes(self) -> int:
        return self.params * BF16

    @property
    def int8_bytes(self) -> int:
        """Linear weights at one byte (per-channel scales neglected), everything else kept in bf16.

        TensorRT-LLM's weight-only quantisation leaves ``lm_head`` in the engine dtype, as it does the
        embedding table, so ``linear_params`` does not count it (:func:`count`)."""
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
    linear = sum(
        m.weight.numel() for name, m in module.named_modules() if isinstance(m, nn.Linear) and name != "lm_head"
    )
    return StageWeights(params=sum(p.numel() for p in module.parameters()), linear_params=linear)


def float32_params(module: nn.Module) -> int:
    """Parameters a stage keeps in float32 whatever it is served in (its ``FLOAT32_PARTS``)."""
    parts = tuple(getattr(module, "FLOAT32_PARTS", ()))
    return sum(p.numel() for name, p in module.named_parameters() if name.split(".")[0] in parts)


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


def step_activation_bytes(config: Qwen2Config, tokens: int, bytes_per_value: int = BF16) -> int:
    """One step's live activations: q/k/v, the two FFN projections, residual + normed copies."""
    qkv = config.hidden_size + 2 * config.num_key_value_heads * config.head_dim
    return tokens * (qkv + 2 * config.intermediate_size + 2 * config.hidden_size) * bytes_per_value


@dataclass(frozen=True)
class EagerStep:
    """One batched step of a KIND_GPU PyTorch stage, traced once on the meta device (minmo preset).

    ``kernels`` / ``views``: the ATen ops the step dispatches that launch a kernel / only make a view
    (a ``TorchDispatchMode`` count); the ``*_per_stream`` parts grow with the streams in the step (the
    speech LM's per-stream attention, cache writes and sampling, whose ``.item()``/``.cpu()`` are host
    syncs), the rest is one packed or padded pass for all of them. ``flops_per_stream``: torch's
    ``FlopCounterMode``; ``activation_per_stream``: peak live bytes of one stream's step in float32.
    """

    steps_per_window: int  # steps each stream needs per 600 ms
    kernels: int
    views: int
    flops_per_stream: float
    activation_per_stream: float
    kernels_per_stream: int = 0
    views_per_stream: int = 0
    syncs_per_stream: int = 0

    def host_ms(self, streams: int) -> float:
        """Launch-side time of one step: what an instance's Python thread spends before the GPU can finish."""
        kernels = (self.kernels + self.kernels_per_stream * streams) * HOST_US_PER_KERNEL
        views = (self.views + self.views_per_stream * streams) * HOST_US_PER_VIEW
        return (kernels + views + self.syncs_per_stream * streams * HOST_US_PER_SYNC) / 1000

    def kernel_floor_ms(self, streams: int) -> float:
        return (self.kernels + self.kernels_per_stream * streams) * GPU_US_PER_KERNEL / 1000


EAGER = {
    # One 600 ms chunk (10 LFR frames) over 6 s of left context: 32 SAN-M blocks + projector.
    "encoder": EagerStep(1, kernels=553, views=640, flops_per_stream=14.3e9, activation_per_stream=81e6),
    # Five 120 ms frames against the 15-frame window.
    "duplex": EagerStep(1, kernels=31, views=15, flops_per_stream=0.2e9, activation_per_stream=10e6),
    # One token: 24 packed layers; attention, cache writes and top-k/top-p sampling per stream.
    "speech_lm": EagerStep(
        15,
        kernels=714,
        views=241,
        flops_per_stream=0.75e9,
        activation_per_stream=0.3e6,
        kernels_per_stream=85,
        views_per_stream=557,
        syncs_per_stream=3,
    ),
    # One 15-token chunk: the flow (10 Euler steps x 2 guidance branches, padded batch) + HiFT.
    "vocoder": EagerStep(1, kernels=14_334, views=7_118, flops_per_stream=130e9, activation_per_stream=60e6),
}


@dataclass(frozen=True)
class Budget:
    weights: dict[str, StageWeights]
    kv_token: int
    speech_lm_kv_token: int  # as served
    session_fixed: int  # encoder + duplex stream state, as served
    speaking_state: int  # speech-LM turn KV + vocoder stream state, as served
    activations: dict[str, int]
    overhead: int  # CUDA contexts
    instances: dict[str, int]
    token2wav_params: int  # weights one 15-token chunk reads: flow encoder + HiFT once, estimator per Euler step
    step_batch: dict[str, int]  # most streams in one step of each PyTorch stage (Triton's batch or max_step_batch)
    stream_state: dict[str, int]  # per-stream state one step of each PyTorch stage reads, as served
    stage_dtype: str  # the values file's: what the four PyTorch stages are served in
    float32: dict[str, int]  # parameters each PyTorch stage keeps in float32 anyway (the vocoder's HiFT)

    @property
    def stage_bytes(self) -> int:
        return DTYPE_BYTES[self.stage_dtype]

    def _bytes(self, stage: str, params: int) -> int:
        kept = self.float32.get(stage, 0)
        return (params - kept) * self.stage_bytes + kept * FP32

    def served_bytes(self, stage: str) -> int:
        """One instance's weights of a KIND_GPU PyTorch stage, as loaded and cast."""
        return self._bytes(stage, self.weights[stage].params)

    def step_read_bytes(self, stage: str) -> int:
        """Weights one step reads: the vocoder's estimator once per Euler step, the others once."""
        params = self.token2wav_params if stage == "vocoder" else self.weights[stage].params
        return self._bytes(stage, params)


def make_budget(values: GpuValues) -> Budget:
    """Instance counts, step caps and the engine's step size come from the deployment's values file."""
    instances = {stage: values.instance_count(stage) for stage in STAGES}
    step_batch = {"encoder": UNARY_BATCH, "duplex": UNARY_BATCH}
    step_batch.update({stage: values.step_batch(stage) for stage in STEP_SCHEDULED})
    modules = build_on_meta()
    vocoder = modules["vocoder"]
    assert isinstance(vocoder, Token2Wav)
    estimator = sum(p.numel() for p in vocoder.flow.decoder.parameters())
    token2wav = (
        sum(p.numel() for p in vocoder.parameters()) + (VocoderConfig.preset("minmo").flow.n_timesteps - 1) * estimator
    )
    backbone_cfg = Qwen2Config.preset("minmo")
    stage_bytes = DTYPE_BYTES[values.stage_dtype]
    lm_kv = kv_bytes_per_token(SpeechLMConfig.preset("minmo").body, stage_bytes)
    turn_kv = int(lm_kv * SPEECH_LM_PER_S * SPEAKING_TURN_S)
    state = {
        "encoder": encoder_state_bytes(EncoderConfig.preset("minmo"), stage_bytes),
        "duplex": duplex_state_bytes(DuplexConfig.preset("minmo"), stage_bytes),
        "speech_lm": turn_kv // 2,  # a step reads the stream's KV: half a turn on average
        "vocoder": vocoder_state_bytes(VocoderConfig.preset("minmo"), stage_bytes),
    }
    activations = {
        "backbone": step_activation_bytes(backbone_cfg, values.max_num_tokens),
        # The engine's p-tuning input sized for the whole in-flight batch (counted as if preallocated).
        "prompt_table": values.max_prompt_embedding_table_size * backbone_cfg.hidden_size * BF16,
    }
    # A full step's activations, in every instance at once: they grow with the streams a step batches.
    for stage in ("speech_lm", "encoder", "duplex", "vocoder"):
        # Traced in float32; scaled to the served dtype (HiFT's float32 share of the vocoder's is neglected).
        per_stream = EAGER[stage].activation_per_stream * stage_bytes / FP32
        activations[stage] = int(instances[stage] * step_batch[stage] * per_stream)
    return Budget(
        weights={name: count(module) for name, module in modules.items()},
        kv_token=kv_bytes_per_token(backbone_cfg),
        speech_lm_kv_token=lm_kv,
        session_fixed=state["encoder"] + state["duplex"],
        speaking_state=turn_kv + state["vocoder"],
        activations=activations,
        # Each KIND_GPU instance and the backbone's one process, which holds the TensorRT-LLM executor.
        overhead=int(CUDA_CONTEXT * sum(instances.values())),
        token2wav_params=token2wav,
        instances=instances,
        step_batch=step_batch,
        stream_state=state,
        stage_dtype=values.stage_dtype,
        float32={name: float32_params(modules[name]) for name in STAGES if name != "backbone"},
    )


@dataclass(frozen=True)
class Capacity:
    sessions: int
    free_bytes: float  # for all sessions' state, after weights, activations and CUDA contexts
    kv_fraction: float  # kv_cache_free_gpu_mem_fraction that gives the backbone exactly its sessions' KV


def weight_bytes(b: Budget, *, backbone_int8: bool) -> int:
    """Everything loaded: the engine once, each PyTorch stage once per instance."""
    backbone = b.weights["backbone"].int8_bytes if backbone_int8 else b.weights["backbone"].bf16_bytes
    stages = sum(b.served_bytes(name) * b.instances[name] for name in STAGES if name != "backbone")
    return backbone + stages


def sessions_per_gpu(b: Budget, *, context: int, backbone_int8: bool) -> Capacity:
    """The memory bound: sessions whose whole state fits beside the weights, each with a full ``context`` of KV.

    TensorRT-LLM sizes its KV pool as a fraction of the memory free after its engine loads, which
    still includes what the other four models need: the fraction is derived here, not guessed.
    """
    backbone = b.weights["backbone"].int8_bytes if backbone_int8 else b.weights["backbone"].bf16_bytes
    usable = GPU_BYTES * (1 - RESERVE)
    free = usable - weight_bytes(b, backbone_int8=backbone_int8) - sum(b.activations.values()) - b.overhead
    per_session = context * b.kv_token + b.session_fixed + SPEAKING_SHARE * b.speaking_state
    sessions = int(free // per_session)
    after_engine = usable - backbone - b.activations["backbone"] - b.activations["prompt_table"] - CUDA_CONTEXT
    return Capacity(sessions, free, sessions * context * b.kv_token / after_engine)


@dataclass(frozen=True)
class StageLoad:
    """One stage's work per 600 ms window at some number of sessions (estimates).

    ``gpu_ms`` is the GPU time of all its instances (Python instances are separate processes, whose
    kernels time-slice the GPU rather than overlap); ``busy_ms`` is the wall time of its busiest
    instance, host launches or GPU, whichever is longer per step.
    """

    stage: str
    batch: int  # streams per step (backbone: rows per engine step)
    steps: int  # per instance per window
    step_ms: float  # one step's wall time (the mean, when the streams need several steps)
    gpu_ms: float
    busy_ms: float


def step_gpu_ms(b: Budget, stage: str, streams: int) -> float:
    """Roofline of one step (weights once + each stream's state, or its FLOPs) plus its kernels' floor."""
    step = EAGER[stage]
    read = b.step_read_bytes(stage) + streams * b.stream_state[stage]
    flops = streams * step.flops_per_stream
    roofline = max(read / GPU_BANDWIDTH, flops / (PEAK_FLOPS[b.stage_bytes] * MATMUL_EFFICIENCY))
    return roofline * 1000 + step.kernel_floor_ms(streams)


def eager_load(b: Budget, stage: str, streams: int) -> StageLoad:
    """A PyTorch stage with ``streams`` live streams spread over its instances; a step takes at most the cap."""
    step, per_instance = EAGER[stage], math.ceil(streams / b.instances[stage])
    if per_instance == 0:
        return StageLoad(stage, 0, 0, 0.0, 0.0, 0.0)
    passes = math.ceil(per_instance / b.step_batch[stage])
    small, larger = divmod(per_instance, passes)  # the streams split as evenly as the cap allows
    sizes = [small + 1] * larger + [small] * (passes - larger)
    gpu = step.steps_per_window * sum(step_gpu_ms(b, stage, n) for n in sizes)
    busy = step.steps_per_window * sum(max(step.host_ms(n), step_gpu_ms(b, stage, n)) for n in sizes)
    steps = step.steps_per_window * passes
    return StageLoad(stage, sizes[0], steps, busy / steps, b.instances[stage] * gpu, busy)


def backbone_load(b: Budget, sessions: int, speaking: int, *, context: int, backbone_int8: bool) -> StageLoad:
    """The engine: 5 decode steps per window for the speaking sessions, every session's listen prefill in flight.

    Each step reads the weights once and the KV of the sequences it runs: every speaking session's, and
    a fifth of the listening sessions' (each sends one 5-row prefill per window); all at ``context``.
    """
    weights = b.weights["backbone"].int8_bytes if backbone_int8 else b.weights["backbone"].bf16_bytes
    rows = speaking + sessions  # 1 token per speaking session + 5 listen rows per session over 5 steps
    read = weights + (speaking + sessions / BACKBONE_STEPS) * context * b.kv_token
    flops = 2 * b.weights["backbone"].linear_params * rows
    step = 1000 * max(read / GPU_BANDWIDTH, flops / (PEAK_FLOPS[BF16] * MATMUL_EFFICIENCY))
    bls = (BACKBONE_STEPS * speaking + sessions) * BLS_MS_PER_RESPONSE / b.instances["backbone"]
    return StageLoad("backbone", rows, BACKBONE_STEPS, step, BACKBONE_STEPS * step, max(BACKBONE_STEPS * step, bls))


def window_load(b: Budget, sessions: int, *, context: int, backbone_int8: bool) -> list[StageLoad]:
    """Every stage's load per window; every session listens (full duplex), a share of them also speaks."""
    speaking = math.ceil(SPEAKING_SHARE * sessions)
    return [
        eager_load(b, "encoder", sessions),
        backbone_load(b, sessions, speaking, context=context, backbone_int8=backbone_int8),
        eager_load(b, "duplex", sessions),
        eager_load(b, "speech_lm", speaking),
        eager_load(b, "vocoder", speaking),
    ]


@dataclass(frozen=True)
class ComputeBound:
    sessions: int
    limit: str  # what runs out first: the shared GPU, or one stage's busiest instance


def overload(loads: list[StageLoad]) -> str | None:
    """What cannot keep real time (None: everything fits in REALTIME_LOAD of the window)."""
    budget = REALTIME_LOAD * WINDOW_MS
    if sum(load.gpu_ms for load in loads) > budget:
        return "GPU time of all stages"
    for load in loads:
        if load.busy_ms > budget:
            return f"{load.stage} instance"
    return None


def compute_bound(b: Budget, *, context: int, backbone_int8: bool, most: int = 1024) -> ComputeBound:
    """The batched-compute bound: most sessions whose every window's work keeps real time."""
    for sessions in range(1, most + 1):
        limit = overload(window_load(b, sessions, context=context, backbone_int8=backbone_int8))
        if limit is not None:
            return ComputeBound(sessions - 1, limit)
    return ComputeBound(most, "none below the search limit")


@dataclass(frozen=True)
class SessionBound:
    memory: Capacity
    compute: ComputeBound

    @property
    def sessions(self) -> int:
        return min(self.memory.sessions, self.compute.sessions)

    @property
    def bound(self) -> str:
        return "memory" if self.memory.sessions <= self.compute.sessions else "compute"


def session_bound(b: Budget, *, context: int, backbone_int8: bool) -> SessionBound:
    return SessionBound(
        sessions_per_gpu(b, context=context, backbone_int8=backbone_int8),
        compute_bound(b, context=context, backbone_int8=backbone_int8),
    )


def floor_ms(nbytes: float) -> float:
    return nbytes / GPU_BANDWIDTH * 1000


def ms(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def _weights_table(b: Budget) -> list[str]:
    w = b.weights
    lines = [
        "### Weights per stage",
        "",
        "| stage | parameters | bf16 GB | int8 weight-only GB | served GB (dtype x instances) |",
        "|---|---:|---:|---:|---:|",
    ]
    served_name = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[b.stage_dtype]
    for name in STAGES:
        if name == "backbone":
            served = f"{gb(w[name].bf16_bytes)} (engine, bf16)"
        else:
            served = f"{gb(b.served_bytes(name) * b.instances[name])} ({served_name} x {b.instances[name]})"
        lines.append(
            f"| {name} | {w[name].params:,} | {gb(w[name].bf16_bytes)} | {gb(w[name].int8_bytes)} | {served} |"
        )
    total = sum(x.params for x in w.values())
    lines.append(
        f"| **all five** | {total:,} | {gb(sum(x.bf16_bytes for x in w.values()))} | "
        f"{gb(sum(x.int8_bytes for x in w.values()))} | {gb(weight_bytes(b, backbone_int8=False))} |"
    )
    return lines


def _state_table(b: Budget) -> list[str]:
    per_s_listen = b.kv_token * FRAMES_PER_S
    per_s_both = b.kv_token * (FRAMES_PER_S + TEXT_PER_S)
    lines = [
        "### Per-session state (backbone KV bf16; the PyTorch stages' state as served)",
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
        f"| speech-LM KV per position (24 x 2 x 64 x 2 x {b.stage_bytes} B) | {b.speech_lm_kv_token:,} B |",
        f"| speech LM, one {SPEAKING_TURN_S} s turn ({SPEECH_LM_PER_S:.1f} positions/s) | "
        f"{mb(b.speech_lm_kv_token * SPEECH_LM_PER_S * SPEAKING_TURN_S)} MB |",
        f"| vocoder stream (flow estimator K/V, 100 frames x 56 blocks x 10 steps x 2 CFG) | "
        f"{mb(b.stream_state['vocoder'])} MB |",
        f"| encoder + duplex streams | {mb(b.session_fixed)} MB |",
    ]
    return lines


def _activation_table(b: Budget) -> list[str]:
    lines = ["### Activations and fixed overheads (estimates)", "", "| item | GB |", "|---|---:|"]
    for name, nbytes in b.activations.items():
        if name == "prompt_table":
            label = "backbone prompt_embedding_table (max_prompt_embedding_table_size x 3584 x 2 B)"
        elif name == "backbone":
            label = "backbone activations (engine, one max_num_tokens step)"
        else:
            label = f"{name} activations ({b.instances[name]} instance(s) x {b.step_batch[name]} streams per step)"
        lines.append(f"| {label} | {gb(nbytes)} |")
    lines.append(
        f"| CUDA contexts ({b.overhead / CUDA_CONTEXT:.0f} processes x {gb(CUDA_CONTEXT)} GB) | {gb(b.overhead)} |"
    )
    return lines


def _step_table(b: Budget) -> list[str]:
    lines = [
        "### One batched step of each PyTorch stage (estimates)",
        "",
        "| stage | steps per stream per 600 ms | streams per step (cap) | host ms, 1 stream / cap | "
        "GPU ms, 1 stream / cap |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage in ("encoder", "duplex", "speech_lm", "vocoder"):
        step, cap = EAGER[stage], b.step_batch[stage]
        lines.append(
            f"| {stage} | {step.steps_per_window} | {cap} | {ms(step.host_ms(1))} / {ms(step.host_ms(cap))} | "
            f"{ms(step_gpu_ms(b, stage, 1))} / {ms(step_gpu_ms(b, stage, cap))} |"
        )
    return lines


def _sessions_table(b: Budget) -> list[str]:
    lines = [
        "### Sessions per L20 (all five models on one GPU)",
        "",
        "| backbone weights | context cap | GB left for session state | sessions (memory) | "
        "kv_cache_free_gpu_mem_fraction | sessions (compute) | compute limit | sessions | bound |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for int8 in (False, True):
        for ctx in (4096, 8192):
            row = session_bound(b, context=ctx, backbone_int8=int8)
            cap = row.memory
            lines.append(
                f"| {'int8' if int8 else 'bf16'} | {ctx // 1024}k | {gb(cap.free_bytes)} | {cap.sessions} | "
                f"{cap.kv_fraction:.2f} | {row.compute.sessions} | {row.compute.limit} | {row.sessions} | "
                f"{row.bound} |"
            )
    return lines


def _load_table(b: Budget, *, context: int) -> list[str]:
    bound = compute_bound(b, context=context, backbone_int8=False)
    loads = window_load(b, bound.sessions, context=context, backbone_int8=False)
    lines = [
        f"### Load per 600 ms at the compute bound (bf16 backbone, {context // 1024}k context, "
        f"{bound.sessions} sessions)",
        "",
        "| stage | streams (rows) per step | steps per instance | ms per step | busiest instance ms | GPU ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for load in loads:
        lines.append(
            f"| {load.stage} | {load.batch} | {load.steps} | {ms(load.step_ms)} | {ms(load.busy_ms)} | "
            f"{ms(load.gpu_ms)} |"
        )
    lines.append(f"| **all** | | | | | {ms(sum(load.gpu_ms for load in loads))} |")
    return lines


def _floor_table(b: Budget) -> list[str]:
    w = b.weights
    lines = [
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
    return lines


def render(b: Budget, *, context: int = 8192) -> str:
    """The Markdown report; ``context`` is the row the per-stage load table details (the values file's)."""
    lines = ["## Memory and compute budget: minmo sizes on one L20 (48 GB, 864 GB/s)", ""]
    for table in (_weights_table(b), _state_table(b), _activation_table(b), _step_table(b), _sessions_table(b)):
        lines += [*table, ""]
    assumptions = [line.replace("{stage_dtype}", b.stage_dtype) for line in ASSUMPTIONS]
    lines += [*_load_table(b, context=context), "", *_floor_table(b), "", *assumptions]
    return "\n".join(lines) + "\n"


ASSUMPTIONS = [
    "Assumptions: 48e9 B of GPU memory with 5% kept free; one CUDA context of 0.5 GB per GPU process "
    "(each KIND_GPU Python instance of the values file, and the backbone's process, which drives the "
    "TensorRT-LLM executor); "
    "the backbone engine in bf16 or int8 weight-only (nn.Linear weights at 1 byte, scales neglected); the four "
    "PyTorch stages as served: weights, state and activations in the values file's stage_dtype ({stage_dtype}; "
    "the vocoder's HiFT weights in float32 in any dtype, as the adapters serve them), one copy per instance; "
    "a session's backbone context capped at the engine's max_seq_len (longer ones are truncated); "
    f"{SPEAKING_SHARE:.0%} of sessions speaking at once; a speaking session holds a {SPEAKING_TURN_S} s "
    "speech-LM turn and one vocoder stream; the listen fork shares its prefix KV blocks (KV-cache reuse). "
    "Activation rows are estimates (backbone: the engine's max_num_tokens step; the PyTorch stages: the peak "
    "live bytes of one stream's step traced on the meta device, times the streams a step batches).",
    "",
    "Sessions are the smaller of two bounds. Memory: every session's state fits beside the weights, activations "
    "and CUDA contexts. Compute: every session listens all the time (an encoder chunk, a 5-row backbone prefill "
    f"and 5 duplex frames per 600 ms) and {SPEAKING_SHARE:.0%} also speak (5 backbone tokens, 15 speech-LM "
    f"tokens, one token2wav chunk per 600 ms); each stage's work per 600 ms must fit in {REALTIME_LOAD:.0%} of "
    "it, on its busiest instance and summed over all stages on the one GPU (Python instances time-slice it). "
    "A batched step reads its weights once for all its streams plus each stream's KV or cache (at 864 GB/s) or "
    f"runs their FLOPs (at {MATMUL_EFFICIENCY:.0%} of 119.5 TFLOPS bf16 / 59.8 TFLOPS fp32), whichever is "
    f"longer, plus {GPU_US_PER_KERNEL:.0f} us of GPU per kernel; the backbone's context is the row's cap for "
    f"every session. The PyTorch stages launch eagerly: {HOST_US_PER_KERNEL:.0f} us of host time per "
    f"kernel-launching op, {HOST_US_PER_VIEW} us per view, {HOST_US_PER_SYNC:.0f} us per host sync (calibrated "
    "on a CPU run of a width-shrunk speech LM, op counts traced on the meta device); the backbone's Python "
    "model spends "
    f"{BLS_MS_PER_RESPONSE} ms of Python per response. These are estimates, not GPU measurements. Nothing here "
    "was measured on a GPU.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memory_budget", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--values", type=Path, default=VALUES, help="the GPU values file (instances, step caps)")
    args = parser.parse_args(argv)
    values = GpuValues.load(args.values)
    text = render(make_budget(values), context=values.max_seq_len)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
