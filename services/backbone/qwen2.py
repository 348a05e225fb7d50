"""A Qwen2-architecture decoder with Hugging Face parameter names, KV-cached, for many streams at once.

Both the MinMo backbone (Qwen2.5-7B-Instruct) and the CosyVoice 2 speech-token LM (a Qwen2.5-0.5B
body) are this decoder, so the real checkpoints load by key name. The math follows HF
``modeling_qwen2``: pre-norm blocks, RMSNorm computed in float32, rotate-half RoPE, GQA attention
with q/k/v biases and no output bias, SwiGLU MLP without biases.

Streams are served *packed*: the new rows of every stream (a prefill's hundreds, a decode step's
one) are concatenated into one ``[T, hidden]`` matrix, so every projection, norm and MLP reads its
weights once per step for all streams; only attention runs per stream, against that stream's own
KV cache (contexts are ragged, and copying them into a padded batch every step would cost more
than the per-stream calls on a CPU). One stream is the special case of a batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, streams: _Packing) -> torch.Tensor:
        """``x``: the packed new rows ``[T, hidden]`` of all streams; ``cos``/``sin``: ``[T, head_dim]``."""
        t = x.shape[0]
        q = self.q_proj(x).view(t, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(t, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(t, self.num_kv_heads, self.head_dim)
        cos, sin = cos[:, None, :], sin[:, None, :]
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        outs = []
        for (begin, end), cache, start in zip(streams.rows, streams.caches, streams.starts, strict=True):
            qi, ki, vi = (r[begin:end].transpose(0, 1) for r in (q, k, v))
            if cache is not None:
                ki, vi = cache.write(self.layer_idx, start, ki, vi)
            outs.append(_attend(qi, ki, vi, start))
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return self.o_proj(out.reshape(t, -1))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
    """Causal attention of ``n`` new rows (``q`` ``[heads, n, d]``) after ``start`` cached ones; ``[n, heads, d]``."""
    n = q.shape[1]
    mask: torch.Tensor | None = None
    causal = False
    if n > 1 and start == 0:
        causal = True
    elif n > 1:
        # New rows may see the whole cached prefix and the new positions up to their own.
        key_pos = torch.arange(start + n, device=q.device)
        query_pos = torch.arange(start, start + n, device=q.device)
        mask = key_pos[None, :] <= query_pos[:, None]
    # 4-D inputs: torch's CPU flash kernel only takes batched tensors (3-D falls back to math).
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask, is_causal=causal, enable_gqa=True)
    return out[0].transpose(0, 1)


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, streams: _Packing) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, streams)
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
        if cache is None:
            self._check_width(inputs_embeds)
            if inputs_embeds.shape[0] > self.config.max_position_embeddings:
                raise ValueError(
                    f"{inputs_embeds.shape[0]} positions exceed max_position_embeddings "
                    f"{self.config.max_position_embeddings}"
                )
            return self._run(inputs_embeds, _Packing([(0, inputs_embeds.shape[0])], [None], [0]))
        return self.forward_packed([inputs_embeds], [cache])[0]

    def forward_packed(self, inputs: Sequence[torch.Tensor], caches: Sequence[KVCache]) -> list[torch.Tensor]:
        """Append ``inputs[i]`` ([n_i, hidden], n_i >= 1) to ``caches[i]`` for every stream in one pass.

        Returns each stream's last-layer states (after the final norm) ``[n_i, hidden]``. The caches
        must be distinct. Atomic: if anything raises, no cache's length changes (rows past a cache's
        length are scratch space), so the caller may retry the streams one at a time.
        """
        if len(inputs) != len(caches) or not inputs:
            raise ValueError(f"forward_packed needs one cache per input: {len(inputs)} inputs, {len(caches)} caches")
        if len({id(c) for c in caches}) != len(caches):
            raise ValueError("forward_packed got the same cache twice: one stream per batch row")
        rows, starts, begin = [], [], 0
        for x in inputs:
            self._check_width(x)
            if x.shape[0] == 0:
                raise ValueError("forward_packed got an empty input: every stream must append at least one row")
            rows.append((begin, begin + x.shape[0]))
            begin += x.shape[0]
        for x, cache in zip(inputs, caches, strict=True):
            starts.append(cache.reserve(x.shape[0]))
        packed = inputs[0] if len(inputs) == 1 else torch.cat(list(inputs))
        hidden = self._run(packed, _Packing(rows, list(caches), starts))
        for x, cache in zip(inputs, caches, strict=True):
            cache.commit(x.shape[0])
        return list(hidden.split([end - begin for begin, end in rows]))

    def _check_width(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.config.hidden_size:
            raise ValueError(f"inputs_embeds must be [n, {self.config.hidden_size}], got {tuple(x.shape)}")

    def _run(self, x: torch.Tensor, streams: _Packing) -> torch.Tensor:
        positions = torch.cat(
            [
                torch.arange(start, start + end - begin, device=x.device, dtype=torch.float32)
                for (begin, end), start in zip(streams.rows, streams.starts, strict=True)
            ]
        )
        cos, sin = self._rotary_at(positions, x)
        for layer in self.layers:
            x = layer(x, cos, sin, streams)
        return self.norm(x)

    def _rotary(self, start: int, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._rotary_at(torch.arange(start, start + n, device=like.device, dtype=torch.float32), like)

    def _rotary_at(self, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos``/``sin`` ``[T, head_dim]`` of float32 ``positions`` (float32 as in HF, whatever the model dtype)."""
        inv_freq = self._inv_freq
        if inv_freq is None or inv_freq.device != like.device:
            dim = self.config.head_dim
            exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=like.device).float() / dim
            inv_freq = self._inv_freq = 1.0 / (self.config.rope_theta**exponents)
        freqs = torch.outer(positions, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(like.dtype), emb.sin().to(like.dtype)


@dataclass(frozen=True)
class _Packing:
    """Where each stream's rows sit in a packed pass: row span, its cache (None: no cache), first position."""

    rows: list[tuple[int, int]]
    caches: list[KVCache | None]
    starts: list[int]


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
