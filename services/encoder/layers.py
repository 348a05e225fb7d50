"""SAN-M and Transformer layers that step the new frames of many streams against per-stream K/V caches.

Every layer takes ``x``, the new frames of all streams packed stream after stream (``[N, d_in]``),
a K/V buffer ``[B, keep + n_max, 2*d]`` holding each stream's keys and values of its last ``keep``
frames, into whose last rows it writes those of the new frames, and a :class:`RowLayout` that says
which rows belong to which stream and what each row may see. Row-wise work (norms, projections,
feed-forwards) runs once on the packed rows; attention and the FSMN memory run on ``[B, n_max, d]``,
each stream's rows first and zero rows after them. The whole-utterance path is the same call with
one stream and an empty cache; streaming and whole compute the same function because visibility is
defined on absolute indices and the FSMN memory only looks back. Caching keys and values (not layer
inputs) means a step projects only its new rows, never the context again.
Parameter names follow FunASR/SenseVoice so that real checkpoints map onto them one to one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

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


@functools.lru_cache(maxsize=64)
def _cached_visibility(
    starts: tuple[int, ...], counts: tuple[int, ...], keep: int, chunk: int, left: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    # Normal tensors, not inference tensors: a later call with autograd on may reuse them.
    with torch.inference_mode(False):
        return _visibility(starts, counts, keep, chunk, left, device)


def _visibility(
    starts: tuple[int, ...], counts: tuple[int, ...], keep: int, chunk: int, left: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Mask, slots and shift rows of :class:`RowLayout`."""
    n_max = max(counts)
    start = torch.tensor(list(starts), device=device)[:, None]
    j = torch.arange(n_max, device=device)
    t = torch.arange(-keep, n_max, device=device)  # key index relative to the stream's first new row
    q_chunk = torch.div(start + j, chunk, rounding_mode="floor")
    k_chunk = torch.div(start + t, chunk, rounding_mode="floor")
    diff = q_chunk[:, :, None] - k_chunk[:, None, :]
    mask = (diff >= 0) & (diff <= left) & (start + t >= 0)[:, None, :]
    if all(n == n_max for n in counts):
        return mask[:, None], None, None
    count = torch.tensor(list(counts), device=device)[:, None]
    # Keys past a stream's new rows are padding; padded queries see every key (so no softmax row is
    # empty) and are dropped by unpad.
    mask = (mask & (t < count)[:, None, :]) | (j >= count)[:, :, None]
    slots = torch.tensor([b * n_max + i for b, n in enumerate(counts) for i in range(n)], device=device)
    return mask[:, None], slots, count + torch.arange(keep, device=device)


@dataclass(frozen=True)
class RowLayout:
    """Where the new rows of ``B`` streams stepped together sit, and which keys each row sees.

    Stream ``b`` brings ``counts[b]`` rows whose first has absolute frame index ``starts[b]``; its keys
    are its cache (frames ``starts[b]-keep ..``, zero rows before frame 0) followed by its new rows. A
    query sees the keys of its own chunk and ``left`` chunks before, from frame 0 on. When every stream
    brings ``n_max`` rows (the usual streaming step) packing and padding are reshapes.
    """

    starts: tuple[int, ...]
    counts: tuple[int, ...]
    keep: int
    left: int
    mask: torch.Tensor  # [B, 1, n_max, keep + n_max]
    positions: torch.Tensor  # [N] absolute frame index of each packed row
    slots: torch.Tensor | None  # [N] padded slot b*n_max + j of each packed row; None when uniform
    shift_rows: torch.Tensor | None  # [B, keep] rows of [cache; new] that form the next cache

    @classmethod
    def build(
        cls, starts: Sequence[int], counts: Sequence[int], keep: int, chunk: int, left: int, device: torch.device
    ) -> RowLayout:
        # What a stream sees depends on its start only while it is younger than ``keep`` (keys before
        # frame 0) and through ``start % chunk``: the oldest start of the same class stands for it.
        ages = tuple(s if s < keep else keep + (s - keep) % chunk for s in starts)
        # Streaming steps repeat a few layouts (cached); a whole utterance's mask is big and one-off.
        visibility = _cached_visibility if 0 < max(counts) <= keep else _visibility
        mask, slots, shift_rows = visibility(ages, tuple(counts), keep, chunk, left, device)
        positions = torch.tensor([s + j for s, n in zip(starts, counts, strict=True) for j in range(n)], device=device)
        return cls(tuple(starts), tuple(counts), keep, left, mask, positions, slots, shift_rows)

    @property
    def batch(self) -> int:
        return len(self.counts)

    @property
    def n_max(self) -> int:
        return int(self.mask.shape[2])

    def strided(self, stride: int, keep: int, chunk: int) -> RowLayout:
        """The layout after a stride-``stride`` convolution that pads each stream to a multiple of it."""
        return RowLayout.build(
            [s // stride for s in self.starts],
            [-(-n // stride) for n in self.counts],
            keep,
            chunk,
            self.left,
            self.mask.device,
        )

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Packed ``[N, w]`` -> ``[B, n_max, w]``, zero rows after each stream's own."""
        if self.slots is None:
            return x.reshape(self.batch, self.n_max, x.shape[-1])
        out = x.new_zeros(self.batch * self.n_max, x.shape[-1])
        return out.index_copy_(0, self.slots, x).view(self.batch, self.n_max, x.shape[-1])

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, n_max, w]`` -> packed ``[N, w]``, dropping the padding rows."""
        flat = y.reshape(self.batch * self.n_max, y.shape[-1])
        return flat if self.slots is None else flat.index_select(0, self.slots)

    def shift(self, kv: torch.Tensor) -> torch.Tensor:
        """Each stream's last ``keep`` rows of a step's K/V ``[B, ..., keep + n_max, w]``: its next cache.

        With equal counts a view of ``kv``, so a stream's next cache costs no copy until it is stacked
        into the next step's buffer.
        """
        if self.shift_rows is None:
            return kv[..., self.n_max :, :]
        index = self.shift_rows.view(self.batch, *([1] * (kv.dim() - 3)), self.keep, 1)
        return kv.gather(-2, index.expand(*kv.shape[:-2], self.keep, kv.shape[-1]))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention of ``[B, n, d]`` queries over ``[B, L, d]`` keys split into ``heads``."""
    b, n, d = q.shape
    qh, kh, vh = (t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, n, d)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(torch.relu(self.w_1(x)))


class MultiHeadedAttentionSANM(nn.Module):
    """Self-attention plus an FSMN memory (depthwise conv over the values), SenseVoice's SAN-M block."""

    def __init__(self, in_dim: int, d_model: int, heads: int, kernel_size: int, right_context: int) -> None:
        super().__init__()
        self.d_model, self.heads = d_model, heads
        self.right_context = right_context
        self.left_context = kernel_size - 1 - right_context
        self.linear_q_k_v = nn.Linear(in_dim, 3 * d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.fsmn_block = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=False)

    def forward(self, h: torch.Tensor, kv: torch.Tensor, rows: RowLayout) -> torch.Tensor:
        """``h``: the normalised new rows ``[N, in_dim]``; ``kv``: see :class:`EncoderLayerSANM`."""
        qkv = rows.pad(self.linear_q_k_v(h))
        kv[:, rows.keep :] = qkv[..., self.d_model :]
        k, v = kv.split(self.d_model, dim=-1)
        att = self.linear_out(attend(qkv[..., : self.d_model], k, v, self.heads, rows.mask))
        return rows.unpad(att + self._memory(v, rows.n_max))

    def _memory(self, v: torch.Tensor, n_new: int) -> torch.Tensor:
        """FSMN over the values ``[B, n_ctx + n_new, d]``; ``[B, n_new, d]`` for the new rows."""
        n_ctx = v.shape[1] - n_new
        # Zero padding stands for frames before the utterance: a stream's cache holds zero rows before
        # frame 0, and the whole path (no cache) pads here, so both read zeros there.
        pad_left = max(0, self.left_context - n_ctx)
        padded = F.pad(v, (0, 0, pad_left, self.right_context))
        windows = padded[:, n_ctx - self.left_context + pad_left :].unfold(1, self.fsmn_block.kernel_size[0], 1)
        # fsmn_block as a sum over each frame's kernel window [B, n_new, d, kernel]: the depthwise
        # Conv1d call costs 3-7x more on the CPU at streaming sizes (overhead; measured in process).
        return (windows * self.fsmn_block.weight[:, 0]).sum(-1) + v[:, n_ctx:]


class EncoderLayerSANM(nn.Module):
    """Pre-LayerNorm SAN-M layer; the first one maps the 560-dim LFR input to ``d_model`` (no residual)."""

    def __init__(
        self, in_dim: int, d_model: int, heads: int, ffn: int, kernel_size: int, right_context: int, eps: float
    ) -> None:
        super().__init__()
        self.residual = in_dim == d_model
        self.self_attn = MultiHeadedAttentionSANM(in_dim, d_model, heads, kernel_size, right_context)
        self.feed_forward = PositionwiseFeedForward(d_model, ffn)
        self.norm1 = nn.LayerNorm(in_dim, eps=eps)
        self.norm2 = nn.LayerNorm(d_model, eps=eps)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, rows: RowLayout) -> torch.Tensor:
        """New rows ``x`` ``[N, in_dim]`` -> ``[N, d_model]``.

        ``kv`` ``[B, keep + n_max, 2*d_model]`` holds each stream's cached keys and values; the layer
        writes this step's after them (rows ``keep:``), so ``rows.shift(kv)`` is the next cache.
        """
        att = self.self_attn(self.norm1(x), kv, rows)
        x = x + att if self.residual else att
        return x + self.feed_forward(self.norm2(x))


class MultiHeadedAttention(nn.Module):
    """Plain multi-head self-attention with FunASR's separate q/k/v projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.dim, self.heads = dim, heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, kv: torch.Tensor, rows: RowLayout) -> torch.Tensor:
        """``h``: the normalised new rows ``[N, dim]``; ``kv``: see :class:`EncoderLayerSANM`."""
        kv[:, rows.keep :, : self.dim] = rows.pad(self.linear_k(h))
        kv[:, rows.keep :, self.dim :] = rows.pad(self.linear_v(h))
        k, v = kv.split(self.dim, dim=-1)
        out = attend(rows.pad(self.linear_q(h)), k, v, self.heads, rows.mask)
        return self.linear_out(rows.unpad(out))


class TransformerLayer(nn.Module):
    """Pre-LayerNorm Transformer layer of the input projector."""

    def __init__(self, dim: int, heads: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.self_attn = MultiHeadedAttention(dim, heads)
        self.feed_forward = PositionwiseFeedForward(dim, ffn)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, rows: RowLayout) -> torch.Tensor:
        """Like :meth:`EncoderLayerSANM.forward`, at the LLM width."""
        x = x + self.self_attn(self.norm1(x), kv, rows)
        return x + self.feed_forward(self.norm2(x))
