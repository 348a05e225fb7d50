"""The voice encoder stage: fbank/LFR/CMVN -> SAN-M encoder -> input projector -> LLM-width embeddings.

One function, :meth:`SpeechEncoder.forward_packed`, runs the network on the new LFR frames of many
streams at once, given each stream's :class:`EncoderState` (position and per-layer K/V caches). The
whole-utterance path (:meth:`SpeechEncoder.forward_frames`) is that call for one stream with empty
caches; :func:`~services.encoder.batch.encode_batch` is it for the streams of one Triton batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.encoder.config import EncoderConfig
from services.encoder.frontend import Cmvn, FbankExtractor, LfrStacker, validate_pcm
from services.encoder.layers import EncoderLayerSANM, RowLayout, TransformerLayer, sinusoidal_encoding

if TYPE_CHECKING:
    from services.encoder.stream import EncoderStream


@dataclass(frozen=True)
class EncoderState:
    """Streaming state of one stream's network: next LFR index and the K/V of each layer's last frames.

    ``sanm`` is ``[num_blocks + tp_blocks, context_frames, 2*d_model]``, ``projector``
    ``[projector_layers, projector.keep, 2*llm_dim]``; rows before frame 0 are zeros. Both have a
    fixed size, so the states of many streams stack into one batch without padding.
    """

    start: int
    sanm: torch.Tensor
    projector: torch.Tensor


def kv_buffer(caches: Sequence[torch.Tensor], new_rows: int) -> torch.Tensor:
    """``[B, layers, keep + new_rows, 2*d]``: each stream's cached K/V, then room for this step's.

    The step's only copy of the caches: every layer writes its new keys and values in place after
    them, and each stream's next cache is a view of it (:meth:`RowLayout.shift`). It is a fresh
    tensor, so a step that fails midway has written into no stream's state.
    """
    first = caches[0]
    layers, keep, width = first.shape
    buffer = first.new_empty(len(caches), layers, keep + new_rows, width)
    for b, cache in enumerate(caches):
        buffer[b, :, :keep] = cache
    return buffer


def _run_layers(layers: Iterable[nn.Module], x: torch.Tensor, kv: torch.Tensor, rows: RowLayout) -> torch.Tensor:
    """Step ``layers`` in order; ``kv`` is their :func:`kv_buffer` ``[B, layers, keep + n_max, 2*d]``."""
    for i, layer in enumerate(layers):
        x = layer(x, kv[:, i], rows)
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
        self.chunk = config.chunk_frames // self.stride
        self.keep = config.left_chunks * self.chunk
        self.conv = nn.Conv1d(config.d_model, config.llm_dim, self.stride, stride=self.stride)
        self.blocks = nn.ModuleList(
            TransformerLayer(config.llm_dim, config.projector_heads, config.projector_ffn, config.layer_norm_eps)
            for _ in range(config.projector_layers)
        )

    def forward(
        self, x: torch.Tensor, caches: Sequence[torch.Tensor], rows: RowLayout
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed encoder rows ``x`` laid out by ``rows`` -> packed embeddings and the next caches.

        ``caches`` are the streams' ``[layers, keep, 2*llm_dim]``; the next ones come stacked.
        """
        padded = rows.pad(x)  # zero rows after each stream's own: its odd tail pads with zeros
        tail = (-rows.n_max) % self.stride
        if tail:
            padded = F.pad(padded, (0, 0, 0, tail))
        strided = rows.strided(self.stride, caches[0].shape[1], self.chunk)
        kv = kv_buffer(caches, strided.n_max)
        out = _run_layers(self.blocks, strided.unpad(self._conv(padded)), kv, strided)
        return out, strided.shift(kv)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """``self.conv`` on ``[B, n, d]`` (``n`` a multiple of the stride) -> ``[B, n/stride, llm_dim]``.

        Kernel = stride, so it is one linear map of each window of ``stride`` frames; done as a matmul
        because a CPU Conv1d this small costs 3-4x more (overhead, measured in process).
        """
        b, n, d = x.shape
        windows = x.reshape(b, n // self.stride, self.stride, d).transpose(2, 3).reshape(-1, d * self.stride)
        weight = self.conv.weight.reshape(self.conv.out_channels, d * self.stride)
        return F.linear(windows, weight, self.conv.bias).reshape(b, n // self.stride, -1)


class SpeechEncoder(nn.Module):
    """SenseVoice-style SAN-M encoder with chunked attention plus MinMo's input projector."""

    # CMVN subtracts a mean of the same size as the features: kept in float32 (services.common.precision).
    FLOAT32_PARTS = ("frontend",)

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
                c.layer_norm_eps,
            )

        self.frontend = Cmvn(c.lfr_dim)
        self.encoders0 = nn.ModuleList([sanm(c.lfr_dim)])
        self.encoders = nn.ModuleList(sanm(c.d_model) for _ in range(c.num_blocks - 1))
        self.after_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.tp_encoders = nn.ModuleList(sanm(c.d_model) for _ in range(c.tp_blocks))
        self.tp_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.tp_blocks or c.tp_norm else None
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

    @property
    def dtype(self) -> torch.dtype:
        """What the network computes in (the served dtype); features stay float32 up to CMVN."""
        return self.after_norm.weight.dtype

    def new_state(self) -> EncoderState:
        """A fresh stream's state: frame 0, caches of zeros (frames before the utterance)."""
        return self._empty_state(self.context_frames, self.projector.keep)

    def _empty_state(self, keep: int, projector_keep: int) -> EncoderState:
        c, w = self.config, self.after_norm.weight
        blocks = len(self.encoders0) + len(self.encoders) + len(self.tp_encoders)
        sanm = torch.zeros(blocks, keep, 2 * c.d_model, device=w.device, dtype=w.dtype)
        projector = torch.zeros(
            len(self.projector.blocks), projector_keep, 2 * c.llm_dim, device=w.device, dtype=w.dtype
        )
        return EncoderState(0, sanm, projector)

    def output_count(self, frames: int) -> int:
        """Embeddings for ``frames`` LFR frames that start on a chunk boundary."""
        return -(-frames // self.config.projector_stride)

    def forward_packed(
        self, lfr: torch.Tensor, states: Sequence[EncoderState], counts: Sequence[int]
    ) -> tuple[torch.Tensor, list[EncoderState]]:
        """One pass over the new LFR frames (before CMVN) of ``B`` streams, packed stream after stream.

        Stream ``b`` brings ``counts[b] > 0`` frames from index ``states[b].start`` (a chunk boundary;
        whole chunks unless they end its utterance). The states may keep any number of frames (all
        the same; 0 for a whole utterance). Returns the packed embeddings (``output_count(counts[b])``
        per stream) and each stream's next state; the given states are left as they are.
        """
        c = self.config
        starts = [s.start for s in states]
        rows = RowLayout.build(starts, counts, states[0].sanm.shape[1], c.chunk_frames, c.left_chunks, lfr.device)
        x = self.frontend(lfr.float()) * math.sqrt(c.d_model) + sinusoidal_encoding(rows.positions + 1, c.lfr_dim)
        x = x.to(self.dtype)
        kv = kv_buffer([s.sanm for s in states], rows.n_max)
        n_main = len(self.encoders0) + len(self.encoders)
        x = self.after_norm(_run_layers([*self.encoders0, *self.encoders], x, kv[:, :n_main], rows))
        if self.tp_norm is not None:
            x = self.tp_norm(_run_layers(self.tp_encoders, x, kv[:, n_main:], rows))
        out, projector = self.projector(x, [s.projector for s in states], rows)
        nexts = [
            EncoderState(start + n, sanm, proj)
            for start, n, sanm, proj in zip(starts, counts, rows.shift(kv).unbind(0), projector.unbind(0), strict=True)
        ]
        return out, nexts

    def forward_frames(self, lfr: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[ceil(n/stride), llm_dim]`` for a whole utterance's LFR frames ``[n, lfr_dim]``."""
        out, _ = self.forward_packed(lfr, [self._empty_state(0, 0)], [lfr.shape[0]])
        return out

    def forward(self, lfr: torch.Tensor) -> torch.Tensor:
        return self.forward_frames(lfr)

    def sanm_whole(self, lfr: torch.Tensor, *, full_attention: bool = True) -> torch.Tensor:
        """The SAN-M encoder alone (no projector) on a whole utterance's LFR frames ``[n, lfr_dim]``.

        ``full_attention``: every frame attends to the whole utterance, as SenseVoice's encoder does
        (with the config's FSMN alignment this is the upstream function: the parity tests compare it
        with FunASR's ``SenseVoiceEncoderSmall``); False: the serving chunk mask.
        """
        c, n = self.config, lfr.shape[0]
        chunk = max(n, 1) if full_attention else c.chunk_frames
        left = 0 if full_attention else c.left_chunks
        rows = RowLayout.build([0], [n], 0, chunk, left, lfr.device)
        x = self.frontend(lfr.float()) * math.sqrt(c.d_model) + sinusoidal_encoding(rows.positions + 1, c.lfr_dim)
        x = x.to(self.dtype)
        blocks = len(self.encoders0) + len(self.encoders) + len(self.tp_encoders)
        kv = x.new_zeros(1, blocks, n, 2 * c.d_model)
        n_main = len(self.encoders0) + len(self.encoders)
        x = self.after_norm(_run_layers([*self.encoders0, *self.encoders], x, kv[:, :n_main], rows))
        if self.tp_norm is not None:
            x = self.tp_norm(_run_layers(self.tp_encoders, x, kv[:, n_main:], rows))
        return x

    @torch.inference_mode()
    def encode(self, pcm: np.ndarray, *, sample_rate: int | None = None) -> torch.Tensor:
        """Whole utterance: float32 PCM ``[S]`` in [-1, 1] -> ``[count_output_frames(S), llm_dim]``."""
        pcm = validate_pcm(pcm, self.config, sample_rate, allow_empty=False)
        lfr = LfrStacker(self.config).push(FbankExtractor(self.config).accept(pcm), final=True)
        if lfr.shape[0] == 0:
            return torch.zeros(0, self.config.llm_dim, device=self.device, dtype=self.dtype)
        return self.forward_frames(torch.from_numpy(lfr).to(self.device))

    def new_stream(self) -> EncoderStream:
        """A fresh streaming session (an approximation when the FSMN looks ahead: see ``fsmn_right_context``)."""
        from services.encoder.stream import EncoderStream

        return EncoderStream(self)
