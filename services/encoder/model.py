"""The voice encoder stage: fbank/LFR/CMVN -> SAN-M encoder -> input projector -> LLM-width embeddings.

One function, :meth:`SpeechEncoder.forward_frames`, runs the network on a run of LFR frames that starts
on a chunk boundary, given per-layer caches of earlier layer inputs. The whole-utterance path calls it
once without caches; :class:`~services.encoder.stream.EncoderStream` calls it per completed chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.encoder.config import EncoderConfig
from services.encoder.frontend import Cmvn, FbankExtractor, LfrStacker, validate_pcm
from services.encoder.layers import EncoderLayerSANM, TransformerLayer, sinusoidal_encoding

if TYPE_CHECKING:
    from services.encoder.stream import EncoderStream


@dataclass
class LayerCaches:
    """Streaming state of the network: next LFR index and each layer's recent inputs."""

    start: int = 0
    encoder: list[torch.Tensor | None] = field(default_factory=list)
    tp: list[torch.Tensor | None] = field(default_factory=list)
    projector: list[torch.Tensor | None] = field(default_factory=list)


def _run_layers(
    layers: Iterable[nn.Module], x: torch.Tensor, caches: list[torch.Tensor | None] | None, start: int, keep: int
) -> torch.Tensor:
    for i, layer in enumerate(layers):
        ctx = caches[i] if caches is not None else None
        out = layer(x, ctx, start)
        if caches is not None:
            joined = x if ctx is None else torch.cat([ctx, x], dim=0)
            caches[i] = joined[max(0, joined.shape[0] - keep) :]
        x = out
    return x


class Projector(nn.Module):
    """MinMo's input projector: a CNN (kernel = stride = 2) to the LLM width, then Transformer layers.

    The CNN comes first because it is what makes the ~170M of the paper add up (see the ``minmo``
    preset). Windows never straddle chunks because chunks have an even number of frames; an odd
    tail at the end of an utterance is padded with one zero frame, hence ``ceil(T_lfr / 2)`` outputs.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.stride = config.projector_stride
        self.keep = config.left_chunks * config.chunk_frames // self.stride
        self.conv = nn.Conv1d(config.d_model, config.llm_dim, self.stride, stride=self.stride)
        chunk = config.chunk_frames // self.stride
        self.blocks = nn.ModuleList(
            TransformerLayer(
                config.llm_dim,
                config.projector_heads,
                config.projector_ffn,
                chunk,
                config.left_chunks,
                config.layer_norm_eps,
            )
            for _ in range(config.projector_layers)
        )

    def forward(self, x: torch.Tensor, caches: list[torch.Tensor | None] | None, start: int) -> torch.Tensor:
        tail = (-x.shape[0]) % self.stride
        if tail:
            x = F.pad(x, (0, 0, 0, tail))
        y = self.conv(x.t().unsqueeze(0)).squeeze(0).t()
        return _run_layers(self.blocks, y, caches, start // self.stride, self.keep)


class SpeechEncoder(nn.Module):
    """SenseVoice-style SAN-M encoder with chunked attention plus MinMo's input projector."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config

        def sanm(in_dim: int) -> EncoderLayerSANM:
            return EncoderLayerSANM(
                in_dim,
                c.d_model,
                c.attention_heads,
                c.linear_units,
                c.kernel_size,
                c.fsmn_right_context,
                c.chunk_frames,
                c.left_chunks,
                c.layer_norm_eps,
            )

        self.frontend = Cmvn(c.lfr_dim)
        self.encoders0 = nn.ModuleList([sanm(c.lfr_dim)])
        self.encoders = nn.ModuleList(sanm(c.d_model) for _ in range(c.num_blocks - 1))
        self.after_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.tp_encoders = nn.ModuleList(sanm(c.d_model) for _ in range(c.tp_blocks))
        self.tp_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.tp_blocks else None
        self.projector = Projector(c)
        # Attention needs left_chunks whole chunks; the causal FSMN needs kernel-1 frames.
        self.context_frames = max(c.left_chunks * c.chunk_frames, c.kernel_size - 1)

    @property
    def frame_ms(self) -> int:
        """Milliseconds of audio per output embedding: 120."""
        return self.config.frame_ms

    @property
    def device(self) -> torch.device:
        """Where the weights are (a KIND_GPU instance moves the module there): new tensors go there too."""
        return next(self.parameters()).device

    def new_caches(self) -> LayerCaches:
        return LayerCaches(
            encoder=[None] * (len(self.encoders0) + len(self.encoders)),
            tp=[None] * len(self.tp_encoders),
            projector=[None] * len(self.projector.blocks),
        )

    def forward_frames(self, lfr: torch.Tensor, caches: LayerCaches | None = None) -> torch.Tensor:
        """Embeddings ``[ceil(n/stride), llm_dim]`` for LFR frames ``[n, lfr_dim]`` (before CMVN).

        The frames must start on a chunk boundary (``caches.start``) and, unless they end the
        utterance, cover whole chunks. ``caches`` is updated in place; ``None`` means a whole utterance.
        """
        c = self.config
        start = caches.start if caches is not None else 0
        if start % c.chunk_frames:
            raise ValueError(f"LFR frames must start on a chunk boundary, got start {start}")
        positions = torch.arange(start + 1, start + lfr.shape[0] + 1, device=lfr.device)
        x = self.frontend(lfr) * math.sqrt(c.d_model) + sinusoidal_encoding(positions, c.lfr_dim)
        main = [*self.encoders0, *self.encoders]
        keep = self.context_frames
        enc, tp, proj = (caches.encoder, caches.tp, caches.projector) if caches is not None else (None, None, None)
        x = self.after_norm(_run_layers(main, x, enc, start, keep))
        if self.tp_norm is not None:
            x = self.tp_norm(_run_layers(self.tp_encoders, x, tp, start, keep))
        out = self.projector(x, proj, start)
        if caches is not None:
            caches.start = start + lfr.shape[0]
        return out

    def forward(self, lfr: torch.Tensor, caches: LayerCaches | None = None) -> torch.Tensor:
        return self.forward_frames(lfr, caches)

    @torch.inference_mode()
    def encode(self, pcm: np.ndarray, *, sample_rate: int | None = None) -> torch.Tensor:
        """Whole utterance: float32 PCM ``[S]`` in [-1, 1] -> ``[count_output_frames(S), llm_dim]``."""
        pcm = validate_pcm(pcm, self.config, sample_rate, allow_empty=False)
        lfr = LfrStacker(self.config).push(FbankExtractor(self.config).accept(pcm), final=True)
        if lfr.shape[0] == 0:
            return torch.zeros(0, self.config.llm_dim, device=self.device)
        return self.forward_frames(torch.from_numpy(lfr).to(self.device))

    def new_stream(self) -> EncoderStream:
        """A fresh streaming session; raises ValueError if the config looks ahead (fsmn_right_context)."""
        from services.encoder.stream import EncoderStream

        return EncoderStream(self)
