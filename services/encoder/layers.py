"""SAN-M and Transformer layers that process new frames given a cache of earlier layer inputs.

Every layer takes ``x`` (the new frames, ``[n, d_in]``), ``ctx`` (the ``c`` layer inputs right before
them, possibly none) and ``start`` (the absolute frame index of ``x[0]``). The whole-utterance path
calls it once with no context; the streaming path once per group of chunks with a bounded context.
Both compute the same function because visibility is defined on absolute indices (:func:`chunk_mask`)
and the FSMN memory only looks back. Parameter names follow FunASR/SenseVoice so that real
checkpoints map onto them one to one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_encoding(positions: torch.Tensor, depth: int) -> torch.Tensor:
    """SenseVoice's position encoding: [sin | cos] halves with geometric timescales up to 10^4."""
    half = depth // 2
    increment = math.log(10000.0) / max(half - 1, 1)
    inv_timescales = torch.exp(torch.arange(half, dtype=torch.float32, device=positions.device) * -increment)
    scaled = positions.to(torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)


def chunk_mask(
    start: int, n_new: int, n_ctx: int, chunk: int, left_chunks: int, device: torch.device | None = None
) -> torch.Tensor:
    """``[n_new, n_ctx + n_new]`` bool: query frame sees keys of its own chunk and ``left_chunks`` before."""
    q_chunk = torch.div(torch.arange(start, start + n_new, device=device), chunk, rounding_mode="floor")
    k_chunk = torch.div(torch.arange(start - n_ctx, start + n_new, device=device), chunk, rounding_mode="floor")
    diff = q_chunk[:, None] - k_chunk[None, :]
    return (diff >= 0) & (diff <= left_chunks)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention over ``[rows, d]`` tensors split into ``heads``; every row sees itself."""
    d_k = q.shape[-1] // heads
    qh, kh, vh = (t.reshape(t.shape[0], heads, d_k).transpose(0, 1) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(0, 1).reshape(q.shape[0], heads * d_k)


def with_context(ctx: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x if ctx is None or ctx.shape[0] == 0 else torch.cat([ctx, x], dim=0)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(torch.relu(self.w_1(x)))


class MultiHeadedAttentionSANM(nn.Module):
    """Self-attention plus an FSMN memory (depthwise conv over the values), SenseVoice's SAN-M block."""

    def __init__(
        self, in_dim: int, d_model: int, heads: int, kernel_size: int, right_context: int, chunk: int, left: int
    ) -> None:
        super().__init__()
        self.d_model, self.heads, self.chunk, self.left = d_model, heads, chunk, left
        self.right_context = right_context
        self.left_context = kernel_size - 1 - right_context
        self.linear_q_k_v = nn.Linear(in_dim, 3 * d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.fsmn_block = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=False)

    def forward(self, h: torch.Tensor, n_new: int, start: int) -> torch.Tensor:
        """``h`` is the normalised ``[ctx; new]``; returns the block output for the ``n_new`` last rows."""
        q, k, v = self.linear_q_k_v(h).split(self.d_model, dim=-1)
        n_ctx = h.shape[0] - n_new
        mask = chunk_mask(start, n_new, n_ctx, self.chunk, self.left, h.device)
        att = self.linear_out(attend(q[n_ctx:], k, v, self.heads, mask))
        return att + self._memory(v, n_new)

    def _memory(self, v: torch.Tensor, n_new: int) -> torch.Tensor:
        n_ctx = v.shape[0] - n_new
        # Zero padding stands for frames before the utterance: the caller keeps at least
        # left_context frames of context, so fewer means the context reaches back to frame 0.
        pad_left = max(0, self.left_context - n_ctx)
        padded = F.pad(v.t().unsqueeze(0), (pad_left, self.right_context))
        window = padded[:, :, n_ctx - self.left_context + pad_left :]
        return self.fsmn_block(window).squeeze(0).t() + v[n_ctx:]


class EncoderLayerSANM(nn.Module):
    """Pre-LayerNorm SAN-M layer; the first one maps the 560-dim LFR input to ``d_model`` (no residual)."""

    def __init__(
        self,
        in_dim: int,
        d_model: int,
        heads: int,
        ffn: int,
        kernel_size: int,
        right_context: int,
        chunk: int,
        left: int,
        eps: float,
    ) -> None:
        super().__init__()
        self.residual = in_dim == d_model
        self.self_attn = MultiHeadedAttentionSANM(in_dim, d_model, heads, kernel_size, right_context, chunk, left)
        self.feed_forward = PositionwiseFeedForward(d_model, ffn)
        self.norm1 = nn.LayerNorm(in_dim, eps=eps)
        self.norm2 = nn.LayerNorm(d_model, eps=eps)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None, start: int) -> torch.Tensor:
        att = self.self_attn(self.norm1(with_context(ctx, x)), x.shape[0], start)
        x = x + att if self.residual else att
        return x + self.feed_forward(self.norm2(x))


class MultiHeadedAttention(nn.Module):
    """Plain multi-head self-attention with FunASR's separate q/k/v projections."""

    def __init__(self, dim: int, heads: int, chunk: int, left: int) -> None:
        super().__init__()
        self.heads, self.chunk, self.left = heads, chunk, left
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, n_new: int, start: int) -> torch.Tensor:
        n_ctx = h.shape[0] - n_new
        mask = chunk_mask(start, n_new, n_ctx, self.chunk, self.left, h.device)
        out = attend(self.linear_q(h[n_ctx:]), self.linear_k(h), self.linear_v(h), self.heads, mask)
        return self.linear_out(out)


class TransformerLayer(nn.Module):
    """Pre-LayerNorm Transformer layer of the input projector."""

    def __init__(self, dim: int, heads: int, ffn: int, chunk: int, left: int, eps: float) -> None:
        super().__init__()
        self.self_attn = MultiHeadedAttention(dim, heads, chunk, left)
        self.feed_forward = PositionwiseFeedForward(dim, ffn)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None, start: int) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(with_context(ctx, x)), x.shape[0], start)
        return x + self.feed_forward(self.norm2(x))
