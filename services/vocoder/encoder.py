"""Chunk-aware upsampling Conformer encoder of the flow (CosyVoice 2's ``UpsampleConformerEncoder``).

Tokens pass a linear embedding, a pre-lookahead layer (the only place that reads right context:
``pre_lookahead_len`` tokens), chunk-masked relative-position self-attention blocks, a causal 2x
upsampling convolution to 50 Hz and more chunk-masked blocks. Parameter names match CosyVoice's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FlowConfig
from .streaming import BatchMemory, CausalConv1d, new_slot, self_mask, unfolded_conv


def relative_sinusoids(distance: Tensor, width: int) -> Tensor:
    """ESPnet relative position encoding of signed distances (query minus key): ``[L, width]``."""
    steps = torch.arange(0, width, 2, dtype=torch.float32, device=distance.device)
    div = torch.exp(steps * -(math.log(10000.0) / width))
    angles = distance.to(torch.float32)[:, None] * div[None, :]
    pe = torch.zeros(distance.shape[0], width, device=distance.device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


class LinearEmbed(nn.Module):
    """Linear + LayerNorm, then the sqrt(width) scaling of ESPnet's positional encoding."""

    def __init__(self, idim: int, odim: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=1e-5))
        self.xscale = math.sqrt(odim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(x) * self.xscale


class RelPositionAttention(nn.Module):
    """Transformer-XL style attention (content + position terms) under a chunk mask."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.h, self.d_k = heads, width // heads
        self.linear_q = nn.Linear(width, width)
        self.linear_k = nn.Linear(width, width)
        self.linear_v = nn.Linear(width, width)
        self.linear_out = nn.Linear(width, width)
        self.linear_pos = nn.Linear(width, width, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.slot = new_slot()

    def forward(self, x: Tensor, memory: BatchMemory | None, chunk: int, left_chunks: int) -> Tensor:
        b, t, width = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        if memory is None:
            mask = self_mask(t, x.device, chunk, left_chunks)
        else:
            k, v, mask = memory.keys_values(self.slot, k, v)
        # query i and key j are i - j + cached frames apart in every stream (remembered keys are
        # right-aligned), from 1 - t to t - 1 + cached: one position table serves the whole batch
        cached = k.shape[2] - t
        span = torch.arange(1 - t, t + cached, device=x.device)
        p = self.linear_pos(relative_sinusoids(span, width).to(x.dtype)).view(-1, self.h, self.d_k).permute(1, 2, 0)
        content = torch.matmul(q + self.pos_bias_u[:, None], k.transpose(-2, -1))
        by_distance = torch.matmul(q + self.pos_bias_v[:, None], p)
        query = torch.arange(t, device=x.device)[:, None]
        key = torch.arange(k.shape[2], device=x.device)[None, :]
        index = (query - key + (cached + t - 1)).expand(b, self.h, t, k.shape[2])
        scores = (content + torch.gather(by_distance, -1, index)) / math.sqrt(self.d_k)
        scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.linear_out(out.transpose(1, 2).reshape(b, t, width))


class PositionwiseFeedForward(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(width, hidden)
        self.w_2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerLayer(nn.Module):
    """Pre-norm attention + feed-forward block (CosyVoice 2 runs it without the conv module)."""

    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = RelPositionAttention(width, heads)
        self.feed_forward = PositionwiseFeedForward(width, hidden)
        self.norm_ff = nn.LayerNorm(width, eps=1e-12)
        self.norm_mha = nn.LayerNorm(width, eps=1e-12)

    def forward(self, x: Tensor, memory: BatchMemory | None, chunk: int, left_chunks: int) -> Tensor:
        x = x + self.self_attn(self.norm_mha(x), memory, chunk, left_chunks)
        return x + self.feed_forward(self.norm_ff(x))


class PreLookaheadLayer(nn.Module):
    """Reads ``lookahead`` tokens to the right (conv1), then a causal conv2, with a residual."""

    def __init__(self, width: int, lookahead: int) -> None:
        super().__init__()
        self.lookahead = lookahead
        self.conv1 = nn.Conv1d(width, width, kernel_size=lookahead + 1)
        self.conv2 = nn.Conv1d(width, width, kernel_size=3)

    def forward(self, x: Tensor, lead: int, valid: Tensor | None = None) -> Tensor:
        """``x`` holds ``lead`` (<= 2) earlier tokens, then the pass; missing right context is zero.

        ``valid`` (``[B, lead + T]``) marks the real tokens of a padded batch: padding must read as
        the zeros a lone stream's convolutions pad with, at the input and between the two convs.
        """
        if valid is not None:
            x = x * valid[:, :, None]
        h = F.leaky_relu(unfolded_conv(self.conv1, F.pad(x, (0, 0, 0, self.lookahead))))
        if valid is not None:
            h = h * valid[:, :, None]
        return unfolded_conv(self.conv2, F.pad(h, (0, 0, 2 - lead, 0))) + x[:, lead:]


class Upsample1D(nn.Module):
    """Nearest 2x repeat, then a causal kernel-5 convolution (4 frames of left context)."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = CausalConv1d(width, width, 2 * stride + 1)

    def forward(self, x: Tensor, memory: BatchMemory | None) -> Tensor:
        return self.conv(x.repeat_interleave(self.stride, dim=1), memory)


class UpsampleConformerEncoder(nn.Module):
    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        width, heads, hidden = config.encoder_size, config.encoder_heads, config.encoder_linear_units
        self.chunk, self.left_chunks, self.ratio = config.chunk_size, config.left_chunks, config.token_mel_ratio
        self.embed = LinearEmbed(config.input_size, width)
        self.pre_lookahead_layer = PreLookaheadLayer(width, config.pre_lookahead_len)
        self.encoders = nn.ModuleList([ConformerLayer(width, heads, hidden) for _ in range(config.encoder_blocks)])
        self.up_layer = Upsample1D(width, config.token_mel_ratio)
        self.up_embed = LinearEmbed(width, width)
        self.up_encoders = nn.ModuleList(
            [ConformerLayer(width, heads, hidden) for _ in range(config.encoder_up_blocks)]
        )
        self.after_norm = nn.LayerNorm(width, eps=1e-5)

    def forward(
        self,
        token_embeddings: Tensor,
        lead: int,
        token_memory: BatchMemory | None = None,
        frame_memory: BatchMemory | None = None,
        valid: Tensor | None = None,
    ) -> Tensor:
        """``[B, lead + T, input_size]`` token embeddings -> ``[B, ratio * T, encoder_size]``.

        ``valid`` marks the real tokens where streams of a batch were padded to a common lead (on the
        left) and length (on the right); their outputs past their own ``ratio * T`` frames are padding.
        """
        x = self.pre_lookahead_layer(self.embed(token_embeddings), lead, valid)
        for layer in self.encoders:
            x = layer(x, token_memory, self.chunk, self.left_chunks)
        x = self.up_embed(self.up_layer(x, frame_memory))
        for layer in self.up_encoders:
            x = layer(x, frame_memory, self.chunk * self.ratio, self.left_chunks)
        return self.after_norm(x)
