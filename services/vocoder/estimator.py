"""The flow-matching estimator v(x_t, t, mu, spk, cond): CosyVoice 2's ``CausalConditionalDecoder``.

A one-level 1-D U-Net of causal ResNet blocks and chunk-masked transformer blocks over the 50 Hz
frames, run time-major (``[B, T, C]``) throughout. Everything is causal at chunk granularity, so
one :class:`StreamMemory` per Euler step lets a stream compute only its new frames. Parameter
names match CosyVoice's (Matcha-TTS/diffusers blocks), including the gaps in ``block.{0,2}`` and
``ff.net.{0,2}`` left by parameter-free layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FlowConfig
from .streaming import BatchMemory, CausalConv1d, new_slot, self_mask


def timestep_sinusoids(t: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Matcha's ``SinusoidalPosEmb``: ``[B]`` flow times in [0, 1] -> ``[B, dim]``."""
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(steps * -(math.log(10000.0) / (half - 1)))
    angles = scale * t[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Block1D(nn.Module):
    """Causal conv (k=3) -> LayerNorm over channels -> Mish; indices as in CosyVoice's Sequential."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.block = nn.ModuleList([CausalConv1d(dim, dim_out, 3), nn.Identity(), nn.LayerNorm(dim_out)])

    def forward(self, x: Tensor, memory: BatchMemory | None) -> Tensor:
        return F.mish(self.block[2](self.block[0](x, memory)))


class ResnetBlock1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_dim, dim_out))
        self.block1 = Block1D(dim, dim_out)
        self.block2 = Block1D(dim_out, dim_out)
        self.res_conv = CausalConv1d(dim, dim_out, 1)

    def forward(self, x: Tensor, time: Tensor, memory: BatchMemory | None) -> Tensor:
        h = self.block1(x, memory) + self.mlp(time)[:, None, :]
        return self.block2(h, memory) + self.res_conv(x)


class Attention(nn.Module):
    """diffusers-style self-attention (no q/k/v bias) under the estimator's chunk mask."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        self.slot = new_slot()

    def forward(self, x: Tensor, memory: BatchMemory | None, chunk: int, left_chunks: int) -> Tensor:
        b, t, _ = x.shape
        q, k, v = (
            proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v)
        )
        if memory is None:
            mask = self_mask(t, x.device, chunk, left_chunks)
        else:
            k, v, mask = memory.keys_values(self.slot, k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out[0](out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class GELUProjection(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: Tensor) -> Tensor:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: Tensor, memory: BatchMemory | None, chunk: int, left_chunks: int) -> Tensor:
        x = x + self.attn1(self.norm1(x), memory, chunk, left_chunks)
        return x + self.ff(self.norm3(x))


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, time_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_dim)
        self.linear_2 = nn.Linear(time_dim, time_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class CausalConditionalDecoder(nn.Module):
    """Predicts the flow velocity for ``[x, mu, spk, cond]`` stacked on the channel axis."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        mel, ch = config.output_size, config.estimator_channels
        self.in_channels = 4 * mel
        self.chunk = config.chunk_size * config.token_mel_ratio
        self.left_chunks = config.left_chunks
        time_dim = 4 * ch
        self.time_mlp = TimestepEmbedding(self.in_channels, time_dim)

        def transformers() -> nn.ModuleList:
            return nn.ModuleList(
                BasicTransformerBlock(ch, config.estimator_heads, config.estimator_head_dim)
                for _ in range(config.estimator_blocks)
            )

        down = [ResnetBlock1D(self.in_channels, ch, time_dim), transformers(), CausalConv1d(ch, ch, 3)]
        self.down_blocks = nn.ModuleList([nn.ModuleList(down)])
        self.mid_blocks = nn.ModuleList(
            nn.ModuleList([ResnetBlock1D(ch, ch, time_dim), transformers()]) for _ in range(config.estimator_mid_blocks)
        )
        up = [ResnetBlock1D(2 * ch, ch, time_dim), transformers(), CausalConv1d(ch, ch, 3)]
        self.up_blocks = nn.ModuleList([nn.ModuleList(up)])
        self.final_block = Block1D(ch, ch)
        self.final_proj = CausalConv1d(ch, mel, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Linear):  # CosyVoice's initialize_weights
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _unet_block(self, block: nn.Module, x: Tensor, time: Tensor, memory: BatchMemory | None) -> Tensor:
        """ResNet block, then its transformer blocks (``block[0]``, ``block[1]`` as in CosyVoice)."""
        assert isinstance(block, nn.ModuleList)
        x = block[0](x, time, memory)
        transformers = block[1]
        assert isinstance(transformers, nn.ModuleList)
        for transformer in transformers:
            x = transformer(x, memory, self.chunk, self.left_chunks)
        return x

    def forward(
        self, x: Tensor, mu: Tensor, t: Tensor, spks: Tensor, cond: Tensor, memory: BatchMemory | None = None
    ) -> Tensor:
        """``x, mu, cond``: ``[B, T, 80]``; ``t``: ``[B]`` (``[1]``: the same for all rows); ``spks``: ``[B, 80]``.

        Returns the velocity ``[B, T, 80]``.
        """
        # The flow time enters in float32 (bf16 would round t = 0.0123 to 0.0123 +- 4e-5); the table in x's dtype.
        time = self.time_mlp(timestep_sinusoids(t.float(), self.in_channels).to(x.dtype))
        h = torch.cat([x, mu, spks[:, None, :].expand(-1, x.shape[1], -1), cond], dim=2)
        down, up = self.down_blocks[0], self.up_blocks[0]
        skip = self._unet_block(down, h, time, memory)
        h = down[2](skip, memory)  # type: ignore[index]
        for mid in self.mid_blocks:
            h = self._unet_block(mid, h, time, memory)
        h = self._unet_block(up, torch.cat([h, skip], dim=2), time, memory)
        h = self.final_block(up[2](h, memory), memory)  # type: ignore[index]
        return self.final_proj(h)
