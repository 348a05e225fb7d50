"""Configuration of the voice encoder stage: frontend, SAN-M encoder, chunking and input projector."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.config import FlatConfig


@dataclass(frozen=True)
class EncoderConfig(FlatConfig):
    """Sizes and streaming geometry of :class:`~services.encoder.model.SpeechEncoder`.

    Frame rates: fbank every ``frame_shift_ms`` (10 ms); one LFR frame every ``lfr_n`` fbank frames
    (60 ms); one output embedding every ``projector_stride`` LFR frames (120 ms). Attention sees the
    frame's own chunk of ``chunk_frames`` LFR frames plus ``left_chunks`` earlier chunks, never a later
    one, which is what lets the streaming path compute exactly the whole-utterance function.
    """

    sample_rate: int = 16000
    n_mels: int = 80
    frame_length_ms: int = 25
    frame_shift_ms: int = 10
    lfr_m: int = 7
    lfr_n: int = 6
    d_model: int = 128
    attention_heads: int = 2
    linear_units: int = 256
    # Blocks of ``encoders0`` (1, maps 560 -> d_model) plus ``encoders``; ``tp_blocks`` follow after_norm.
    num_blocks: int = 3
    tp_blocks: int = 1
    # SenseVoice's encoder applies tp_norm after its tp blocks even when it has none; True keeps that.
    tp_norm: bool = False
    kernel_size: int = 11
    # FSMN look-ahead in LFR frames. SenseVoice centres its kernel: (kernel-1) - (kernel-1)//2 (= 5 for 11).
    # 0 makes streaming exact; > 0 (imported SenseVoice weights) streams an approximation: the last
    # fsmn_right_context frames of a chunk read zeros for frames not yet received (docs/real-model.md).
    fsmn_right_context: int = 0
    chunk_frames: int = 4
    left_chunks: int = 4
    llm_dim: int = 256
    projector_layers: int = 2
    projector_heads: int = 2
    projector_ffn: int = 256
    projector_stride: int = 2
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        checks = [
            (self.sample_rate > 0, "sample_rate must be positive"),
            (self.n_mels > 0 and self.lfr_m > 0 and self.lfr_n > 0, "n_mels, lfr_m and lfr_n must be positive"),
            (self.d_model % self.attention_heads == 0, "d_model must be divisible by attention_heads"),
            (self.llm_dim % self.projector_heads == 0, "llm_dim must be divisible by projector_heads"),
            (self.num_blocks >= 1 and self.tp_blocks >= 0, "num_blocks must be >= 1 and tp_blocks >= 0"),
            (self.kernel_size >= 1, "kernel_size must be >= 1"),
            (0 <= self.fsmn_right_context < self.kernel_size, "fsmn_right_context must be in [0, kernel_size)"),
            (self.projector_stride >= 1, "projector_stride must be >= 1"),
            (
                self.chunk_frames > 0 and self.chunk_frames % self.projector_stride == 0,
                "chunk_frames must be a positive multiple of projector_stride (even for stride 2), so that "
                "no projector window straddles two chunks",
            ),
            (self.left_chunks >= 0, "left_chunks must be >= 0"),
            (self.projector_layers >= 0, "projector_layers must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"EncoderConfig: {message}")

    @property
    def lfr_dim(self) -> int:
        return self.n_mels * self.lfr_m

    @property
    def frame_ms(self) -> int:
        """Milliseconds of audio per output embedding (120 for MinMo)."""
        return self.frame_shift_ms * self.lfr_n * self.projector_stride

    @property
    def chunk_ms(self) -> int:
        return self.frame_shift_ms * self.lfr_n * self.chunk_frames

    @classmethod
    def preset(cls, name: str) -> EncoderConfig:
        """``smoke``: tiny and CPU-fast. ``minmo``: the sizes we assume for MinMo's SenseVoice-Large encoder.

        ``minmo`` assumptions (SenseVoice-Large's configuration is not published): width 1280 with 20
        heads, the width and head count of CosyVoice 2's speech tokenizer, which is built from the
        SenseVoice-Large encoder; 32 SAN-M blocks with a 4x feed-forward (5120) and SenseVoice-Small's
        FSMN kernel of 11; no tp blocks. That gives ~627M encoder parameters against the paper's
        ~636M. The projector applies its CNN first (1280*2 -> 3584, stride 2) and then two Transformer
        layers at the LLM width with a 4096 feed-forward: ~171M against the paper's ~170M; putting the
        Transformer layers at the encoder width instead would give only ~49M. Chunking (600 ms chunks,
        6 s of left context) is a serving choice, not from the paper.
        """
        if name == "smoke":
            return cls()
        if name == "minmo":
            return cls(
                d_model=1280,
                attention_heads=20,
                linear_units=5120,
                num_blocks=32,
                tp_blocks=0,
                kernel_size=11,
                chunk_frames=10,
                left_chunks=10,
                llm_dim=3584,
                projector_layers=2,
                projector_heads=28,
                projector_ffn=4096,
            )
        raise ValueError(f"unknown encoder preset {name!r}; expected 'smoke' or 'minmo'")


def count_fbank_frames(num_samples: int, config: EncoderConfig) -> int:
    """Kaldi fbank with ``snip_edges``: a frame needs a full window, so 0 frames below one window."""
    window = config.sample_rate * config.frame_length_ms // 1000
    shift = config.sample_rate * config.frame_shift_ms // 1000
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def count_output_frames(num_samples: int, config: EncoderConfig) -> int:
    """Embeddings for a whole utterance: ceil(fbank / lfr_n) LFR frames, then ceil(lfr / stride)."""
    lfr = math.ceil(count_fbank_frames(num_samples, config) / config.lfr_n)
    return math.ceil(lfr / config.projector_stride)
