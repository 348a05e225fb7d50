"""The full-duplex predictor: one causal Transformer layer and a 3-way classifier per 120 ms frame.

It reads the backbone's last-layer hidden states of the user's speech frames plus a per-frame flag
saying whether the assistant is speaking, and scores KEEP_LISTENING / RESPOND_NOW / STOP_SPEAKING.
Attention of a frame is restricted to the last ``window`` frames with a learned per-head bias per
distance (no absolute positions), so a stream that keeps ``window - 1`` frames computes exactly what
:meth:`DuplexPredictor.forward` computes on a whole sequence, however long the session runs.
"""

from __future__ import annotations

from enum import IntEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from services.duplex.config import DuplexConfig


class Decision(IntEnum):
    KEEP_LISTENING = 0
    RESPOND_NOW = 1
    STOP_SPEAKING = 2


NUM_CLASSES = len(Decision)


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
        b, t, d = x.shape
        q = self.q_proj(x[:, t - n_query :]).view(b, n_query, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        distance = torch.arange(t - n_query, t, device=x.device)[:, None] - torch.arange(t, device=x.device)[None, :]
        visible = (distance >= 0) & (distance < self.window)
        bias = self.relative_bias[:, distance.clamp(0, self.window - 1)]
        bias = bias.masked_fill(~visible, float("-inf")).to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.unsqueeze(0), dropout_p=self.dropout if self.training else 0.0
        )
        return self.o_proj(out.transpose(1, 2).reshape(b, n_query, d))


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
        return self.input_proj(hidden.float()) + self.speaking_embed(speaking.long())

    def head(self, x: Tensor, n_query: int) -> Tensor:
        return self.classifier(self.norm(self.layer(x, n_query)))

    def forward(self, hidden: Tensor, speaking: Tensor) -> Tensor:
        """Logits [B, T, 3]; frame ``i`` sees frames ``i-window+1 .. i`` only."""
        x = self.embed(hidden, speaking)
        return self.head(x, x.shape[1])

    def new_stream(self) -> DuplexStream:
        return DuplexStream(self)


class DuplexStream:
    """Frame-by-frame (or chunk) scoring of one live listen path; keeps ``window - 1`` frames."""

    def __init__(self, model: DuplexPredictor) -> None:
        self._model = model
        # New tensors go where the weights are (a KIND_GPU instance moves the module there).
        self._device = next(model.parameters()).device
        self._context = torch.zeros(0, model.config.d_model, device=self._device)
        self.frames_seen = 0

    def push(self, hidden: Tensor, speaking: bool | Tensor) -> Tensor:
        """Probabilities [n, 3] for ``n`` new frames of hidden states [n, llm_dim]."""
        if hidden.dim() != 2:
            raise ValueError(f"hidden must be [n, {self._model.config.llm_dim}], got {tuple(hidden.shape)}")
        n = hidden.shape[0]
        if isinstance(speaking, bool):
            flags = torch.full((n,), speaking, device=self._device)
        else:
            flags = speaking.reshape(-1).bool().to(self._device)
        if flags.shape[0] != n:
            raise ValueError(f"speaking has {flags.shape[0]} flags for {n} frames")
        if n == 0:
            return torch.zeros(0, NUM_CLASSES, device=self._device)
        with torch.inference_mode():
            x = self._model.embed(hidden.to(self._device).unsqueeze(0), flags.unsqueeze(0))[0]
            context = torch.cat([self._context, x])
            probs = self._model.head(context.unsqueeze(0), n)[0].softmax(-1)
        keep = self._model.config.window - 1
        self._context = context[max(0, context.shape[0] - keep) :] if keep else context[:0]
        self.frames_seen += n
        return probs
