"""A Qwen2-architecture decoder with Hugging Face parameter names, batch size one, KV-cached.

Both the MinMo backbone (Qwen2.5-7B-Instruct) and the CosyVoice 2 speech-token LM (a Qwen2.5-0.5B
body) are this decoder, so the real checkpoints load by key name. The math follows HF
``modeling_qwen2``: pre-norm blocks, RMSNorm computed in float32, rotate-half RoPE, GQA attention
with q/k/v biases and no output bias, SwiGLU MLP without biases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from services.backbone.kv_cache import KVCache
from services.common.config import FlatConfig

# 256 byte ids + 5 chat/audio specials; kept in sync with SmokeByteTokenizer by a unit test.
SMOKE_VOCAB_SIZE = 261


@dataclass(frozen=True)
class Qwen2Config(FlatConfig):
    """The fields of an HF Qwen2 ``config.json`` that change the math or the parameter shapes.

    ``vocab_size == 0`` builds a body without ``embed_tokens``: the speech-token LM only ever receives
    input embeddings, so CosyVoice 2's text table (136M parameters) is not carried.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.num_attention_heads} heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if self.vocab_size < 0 or (self.vocab_size == 0 and self.tie_word_embeddings):
            raise ValueError("tie_word_embeddings needs a vocabulary (vocab_size > 0)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def preset(cls, name: str) -> Self:
        """``minmo``: Qwen2.5-7B-Instruct. ``smoke``: tiny, over the smoke byte tokenizer's vocabulary."""
        if name == "minmo":
            return cls(
                vocab_size=152064,
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                rope_theta=1_000_000.0,
                rms_norm_eps=1e-6,
                max_position_embeddings=32768,
                tie_word_embeddings=False,
            )
        if name == "smoke":
            return cls(
                vocab_size=SMOKE_VOCAB_SIZE,
                hidden_size=256,
                intermediate_size=512,
                num_hidden_layers=4,
                num_attention_heads=8,
                num_key_value_heads=2,
                max_position_embeddings=4096,
                tie_word_embeddings=True,
            )
        raise ValueError(f"unknown Qwen2Config preset {name!r}: expected 'smoke' or 'minmo'")


class Qwen2RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # HF normalises in float32 and scales after casting back; kept for bf16 parity.
        normed = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).to(x.dtype)
        return self.weight * normed


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Qwen2Attention(nn.Module):
    def __init__(self, config: Qwen2Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, kv_width, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, kv_width, bias=True)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None, start: int
    ) -> torch.Tensor:
        n = x.shape[0]
        q = self.q_proj(x).view(n, self.num_heads, self.head_dim).transpose(0, 1)
        k = self.k_proj(x).view(n, self.num_kv_heads, self.head_dim).transpose(0, 1)
        v = self.v_proj(x).view(n, self.num_kv_heads, self.head_dim).transpose(0, 1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.write(self.layer_idx, start, k, v)
        mask: torch.Tensor | None = None
        causal = False
        if n > 1 and start == 0:
            causal = True
        elif n > 1:
            # New rows may see the whole cached prefix and the new positions up to their own.
            key_pos = torch.arange(start + n, device=x.device)
            query_pos = torch.arange(start, start + n, device=x.device)
            mask = key_pos[None, :] <= query_pos[:, None]
        # 4-D inputs: torch's CPU flash kernel only takes batched tensors (3-D falls back to math).
        out = F.scaled_dot_product_attention(
            q[None], k[None], v[None], attn_mask=mask, is_causal=causal, enable_gqa=True
        )[0]
        return self.o_proj(out.transpose(0, 1).reshape(n, -1))


class Qwen2MLP(nn.Module):
    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2DecoderLayer(nn.Module):
    def __init__(self, config: Qwen2Config, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Qwen2Attention(config, layer_idx)
        self.mlp = Qwen2MLP(config)
        self.input_layernorm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None, start: int
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen2Model(nn.Module):
    """HF ``Qwen2Model``: ``embed_tokens``, ``layers.N.*``, ``norm``; returns normed last-layer states."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size) if config.vocab_size else None
        self.layers = nn.ModuleList(Qwen2DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps)
        # A plain attribute, not a buffer: meta-device construction and to_empty() loading would
        # leave a non-persistent buffer uninitialised.
        self._inv_freq: torch.Tensor | None = None

    def new_cache(self) -> KVCache:
        c = self.config
        weight = self.norm.weight
        return KVCache(
            c.num_hidden_layers,
            c.num_key_value_heads,
            c.head_dim,
            max_length=c.max_position_embeddings,
            dtype=weight.dtype,
            device=weight.device,
        )

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embed_tokens is None:
            raise ValueError("this Qwen2 body has no embed_tokens (vocab_size 0); pass input embeddings")
        return self.embed_tokens(ids)

    def forward(self, inputs_embeds: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Run ``inputs_embeds`` [n, hidden] after the cached prefix (or from position 0 without a cache)."""
        if inputs_embeds.dim() != 2 or inputs_embeds.shape[1] != self.config.hidden_size:
            raise ValueError(f"inputs_embeds must be [n, {self.config.hidden_size}], got {tuple(inputs_embeds.shape)}")
        n = inputs_embeds.shape[0]
        if cache is not None:
            start = cache.reserve(n)
        elif n > self.config.max_position_embeddings:
            raise ValueError(f"{n} positions exceed max_position_embeddings {self.config.max_position_embeddings}")
        else:
            start = 0
        cos, sin = self._rotary(start, n, inputs_embeds)
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, cache, start)
        if cache is not None:
            cache.commit(n)
        return self.norm(x)

    def _rotary(self, start: int, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 as in HF, whatever the model dtype.
        inv_freq = self._inv_freq
        if inv_freq is None or inv_freq.device != like.device:
            dim = self.config.head_dim
            exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=like.device).float() / dim
            inv_freq = self._inv_freq = 1.0 / (self.config.rope_theta**exponents)
        positions = torch.arange(start, start + n, device=like.device, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(like.dtype), emb.sin().to(like.dtype)


def init_qwen2_weights(module: nn.Module, std: float = 0.02) -> None:
    """HF-style initialisation (normal(0, std), norms at one); biases also random so tests exercise them."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, 0.0, std)
            if sub.bias is not None:
                nn.init.normal_(sub.bias, 0.0, std)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, 0.0, std)
        elif isinstance(sub, Qwen2RMSNorm):
            nn.init.ones_(sub.weight)
