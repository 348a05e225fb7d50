"""The full-duplex predictor: one causal Transformer layer and a 3-way classifier per 120 ms frame.

It reads the backbone's last-layer hidden states of the user's speech frames plus a per-frame flag
saying whether the assistant is speaking, and scores KEEP_LISTENING / RESPOND_NOW / STOP_SPEAKING.
Attention of a frame is restricted to the last ``window`` frames with a learned per-head bias per
distance (no absolute positions), so a stream that keeps the keys and values of its ``window - 1``
last frames computes exactly what :meth:`DuplexPredictor.forward` computes on a whole sequence,
however long the session runs. Streams step together through
:func:`~services.duplex.batch.score_batch`; :meth:`DuplexStream.push` is that for one stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minmo_contracts.turn_taking import NUM_CLASSES, Decision
from services.duplex.batch import DuplexWork, WindowRows, score_batch
from services.duplex.config import DuplexConfig

__all__ = ["NUM_CLASSES", "Decision", "DuplexPredictor", "DuplexStream"]


class WindowedSelfAttention(nn.Module):
    def __init__(self, config: DuplexConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads
        self.window = config.window
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.o_proj = nn.Linear(config.d_model, config.d_model)
        # Additive score bias per head and distance 0..window-1 (query frame minus key frame).
        self.relative_bias = nn.Parameter(torch.zeros(config.num_heads, config.window))
        self.dropout = config.dropout

    def forward(self, x: Tensor, n_query: int) -> Tensor:
        """Attend from the last ``n_query`` frames of ``x`` [B, T, D] to all frames; [B, n_query, D]."""
        t = x.shape[1]
        distance = torch.arange(t - n_query, t, device=x.device)[:, None] - torch.arange(t, device=x.device)[None, :]
        visible = (distance >= 0) & (distance < self.window)
        q = self.q_proj(x[:, t - n_query :])
        return self.o_proj(self._attend(q, self.k_proj(x), self.v_proj(x), self._bias(distance, visible[None])))

    def step(self, h: Tensor, cache: Tensor, rows: WindowRows) -> tuple[Tensor, Tensor]:
        """Normalised new frames ``h`` [N, D] of the streams in ``rows`` against their K/V ``cache``.

        ``cache`` is [B, window-1, 2D]; returns the attention output [N, D] and the next caches.
        """
        full = torch.cat([cache, rows.pad(torch.cat([self.k_proj(h), self.v_proj(h)], dim=-1))], dim=1)
        k, v = full.split(h.shape[-1], dim=-1)
        out = self._attend(rows.pad(self.q_proj(h)), k, v, self._bias(rows.distance, rows.visible))
        return self.o_proj(rows.unpad(out)), rows.shift(full)

    def _bias(self, distance: Tensor, visible: Tensor) -> Tensor:
        """Additive mask [B, heads, n, L] from the distances [n, L] and what each stream sees [B, n, L]."""
        bias = self.relative_bias[:, distance.clamp(0, self.window - 1)]
        return torch.where(visible[:, None], bias[None], float("-inf"))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Queries [B, n, D] over keys and values [B, L, D] with an additive ``mask``; [B, n, D]."""
        b, n, d = q.shape
        qh, kh, vh = (t.reshape(b, t.shape[1], self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=mask.to(qh.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        return out.transpose(1, 2).reshape(b, n, d)


class DuplexLayer(nn.Module):
    """Pre-norm Transformer layer (attention + GELU feed-forward)."""

    def __init__(self, config: DuplexConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.self_attn = WindowedSelfAttention(config)
        self.post_attention_layernorm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.d_model, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, n_query: int) -> Tensor:
        h = x[:, x.shape[1] - n_query :] + self.dropout(self.self_attn(self.input_layernorm(x), n_query))
        return self._feed_forward(h)

    def step(self, x: Tensor, cache: Tensor, rows: WindowRows) -> tuple[Tensor, Tensor]:
        """The layer on the packed new frames [N, D] of many streams; see :meth:`WindowedSelfAttention.step`."""
        att, cache = self.self_attn.step(self.input_layernorm(x), cache, rows)
        return self._feed_forward(x + self.dropout(att)), cache

    def _feed_forward(self, h: Tensor) -> Tensor:
        return h + self.dropout(self.fc2(F.gelu(self.fc1(self.post_attention_layernorm(h)))))


class DuplexPredictor(nn.Module):
    def __init__(self, config: DuplexConfig) -> None:
        super().__init__()
        self.config = config
        self.input_proj = nn.Linear(config.llm_dim, config.d_model)
        self.speaking_embed = nn.Embedding(2, config.d_model)
        self.layer = DuplexLayer(config)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(config.d_model, NUM_CLASSES)

    def embed(self, hidden: Tensor, speaking: Tensor) -> Tensor:
        """Project hidden states [B, T, llm_dim] and add the speaking embedding; [B, T, d_model]."""
        if hidden.dim() != 3 or hidden.shape[-1] != self.config.llm_dim:
            raise ValueError(f"hidden must be [B, T, {self.config.llm_dim}], got {tuple(hidden.shape)}")
        if speaking.shape != hidden.shape[:2]:
            raise ValueError(f"speaking must be [B, T] = {tuple(hidden.shape[:2])}, got {tuple(speaking.shape)}")
        return self.input_proj(hidden.to(self.input_proj.weight.dtype)) + self.speaking_embed(speaking.long())

    def head(self, x: Tensor, n_query: int) -> Tensor:
        return self.classifier(self.norm(self.layer(x, n_query)))

    def forward(self, hidden: Tensor, speaking: Tensor) -> Tensor:
        """Logits [B, T, 3]; frame ``i`` sees frames ``i-window+1 .. i`` only."""
        x = self.embed(hidden, speaking)
        return self.head(x, x.shape[1])

    def new_cache(self) -> Tensor:
        """A fresh stream's keys and values of its last ``window - 1`` frames: zeros (before frame 0)."""
        weight = self.input_proj.weight
        return torch.zeros(self.config.window - 1, 2 * self.config.d_model, device=weight.device, dtype=weight.dtype)

    def forward_packed(
        self, hidden: Tensor, speaking: Tensor, caches: Tensor, rows: WindowRows
    ) -> tuple[Tensor, Tensor]:
        """Probabilities [N, 3] for the packed new frames of the streams in ``rows`` and their next caches.

        ``hidden`` [N, llm_dim] and ``speaking`` [N] are stream after stream; ``caches`` is the
        streams' stacked :meth:`new_cache`-shaped K/V, [B, window-1, 2*d_model].
        """
        x = self.embed(hidden[None], speaking[None])[0]
        h, caches = self.layer.step(x, caches, rows)
        # Probabilities in float32 whatever the served dtype: the policy compares them with thresholds.
        return self.classifier(self.norm(h)).float().softmax(-1), caches

    def new_stream(self) -> DuplexStream:
        return DuplexStream(self)


class DuplexStream:
    """Frame-by-frame (or chunk) scoring of one live listen path; keeps ``window - 1`` frames of K/V."""

    def __init__(self, model: DuplexPredictor) -> None:
        self._model = model
        # New tensors go where the weights are (a KIND_GPU instance moves the module there).
        self._device = next(model.parameters()).device
        self._cache = model.new_cache()
        self.frames_seen = 0

    @property
    def model(self) -> DuplexPredictor:
        return self._model

    @property
    def cache(self) -> Tensor:
        """Keys and values of the last ``window - 1`` frames; replaced (never mutated) by each scored work."""
        return self._cache

    def prepare(self, hidden: Tensor, speaking: bool | Tensor) -> DuplexWork:
        """Check ``n`` new frames of hidden states [n, llm_dim] and their speaking flag(s); no state change."""
        width = self._model.config.llm_dim
        if hidden.dim() != 2 or hidden.shape[1] != width:
            raise ValueError(f"hidden must be [n, {width}], got {tuple(hidden.shape)}")
        n = hidden.shape[0]
        if isinstance(speaking, bool):
            flags = torch.full((n,), speaking, device=self._device)
        else:
            flags = speaking.reshape(-1).bool().to(self._device)
        if flags.shape[0] != n:
            raise ValueError(f"speaking has {flags.shape[0]} flags for {n} frames")
        return DuplexWork(self, hidden.to(self._device, torch.float32), flags, self.frames_seen)

    def push(self, hidden: Tensor, speaking: bool | Tensor) -> Tensor:
        """Probabilities [n, 3] for ``n`` new frames of hidden states [n, llm_dim]."""
        return score_batch(self._model, [self.prepare(hidden, speaking)])[0]

    def _advance(self, work: DuplexWork, cache: Tensor) -> None:
        """Commit a scored ``work`` (called by :func:`~services.duplex.batch.score_batch` only)."""
        self._cache = cache
        self.frames_seen += work.size
