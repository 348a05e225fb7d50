"""Speech tokens -> 80-bin mel at 50 Hz: CosyVoice 2's ``CausalMaskedDiffWithXvec`` for inference.

``Flow.forward`` renders a whole utterance; ``Flow.advance`` continues a :class:`FlowState` with
newly pushed tokens and returns the mel of every frame that is new or not final yet. Tokens whose
chunk and ``pre_lookahead_len`` right context are complete are final: their keys/values and conv
context go into the state's memories and are never recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FlowConfig
from .encoder import UpsampleConformerEncoder
from .estimator import CausalConditionalDecoder
from .noise import PositionalNoise
from .streaming import StreamMemory

# conv2 of the pre-lookahead layer is causal with kernel 3: it needs two earlier tokens
_LEAD_TOKENS = 2


class CausalConditionalCFM(nn.Module):
    """Euler integration of the estimator's velocity from seeded noise, with classifier-free guidance."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.estimator = CausalConditionalDecoder(config)
        self.cfg_rate = config.cfg_rate
        self.noise = PositionalNoise(config.noise_seed, config.output_size, block=50)
        # cosine schedule: small steps near t=0, where the velocity changes fastest
        self.t_span = [1.0 - math.cos(0.5 * math.pi * i / config.n_timesteps) for i in range(config.n_timesteps + 1)]

    def forward(self, mu: Tensor, spks: Tensor, start: int, memories: list[StreamMemory] | None = None) -> Tensor:
        """``mu``: ``[1, T, 80]`` for frames ``[start, start + T)``; ``spks``: ``[1, 80]`` -> mel ``[1, T, 80]``."""
        x = self.noise.take(start, mu.shape[1]).T[None].to(mu.device, mu.dtype)
        mu_in = torch.cat([mu, torch.zeros_like(mu)])
        spks_in = torch.cat([spks, torch.zeros_like(spks)])
        cond_in = torch.zeros_like(mu_in)  # no zero-shot prompt mel
        for step in range(len(self.t_span) - 1):
            t, dt = self.t_span[step], self.t_span[step + 1] - self.t_span[step]
            memory = memories[step] if memories is not None else None
            t_in = torch.full((2,), t, dtype=mu.dtype, device=mu.device)
            velocity = self.estimator(torch.cat([x, x]), mu_in, t_in, spks_in, cond_in, memory)
            guided = (1.0 + self.cfg_rate) * velocity[:1] - self.cfg_rate * velocity[1:]
            x = x + dt * guided
        return x


@dataclass
class FlowState:
    """One stream's flow progress: final tokens, the tokens after them, and the layer memories."""

    token_memory: StreamMemory
    frame_memory: StreamMemory
    step_memories: list[StreamMemory]
    finished: int = 0  # tokens whose mel is final
    received: int = 0
    window: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # from finished - lead


class Flow(nn.Module):
    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        self.input_embedding = nn.Embedding(config.vocab_size, config.input_size)
        self.spk_embed_affine_layer = nn.Linear(config.spk_embed_dim, config.output_size)
        self.encoder = UpsampleConformerEncoder(config)
        self.encoder_proj = nn.Linear(config.encoder_size, config.output_size)
        self.decoder = CausalConditionalCFM(config)

    def project_speaker(self, embedding: Tensor) -> Tensor:
        """CAM++ x-vector ``[1, 192]`` -> ``[1, 80]`` (unit-normalised first, as in training)."""
        return self.spk_embed_affine_layer(F.normalize(embedding, dim=1))

    def _mel(self, window: Tensor, lead: int, spks: Tensor, state: FlowState | None) -> Tensor:
        h = self.encoder(
            self.input_embedding(window)[None],
            lead,
            state.token_memory if state else None,
            state.frame_memory if state else None,
        )
        start = state.finished * self.config.token_mel_ratio if state else 0
        mel = self.decoder(self.encoder_proj(h), spks, start, state.step_memories if state else None)
        return mel[0].T

    def forward(self, tokens: Tensor, spks: Tensor) -> Tensor:
        """Whole utterance: ``[N]`` token ids, ``[1, 80]`` speaker -> mel ``[80, 2N]``."""
        device = self.input_embedding.weight.device
        if tokens.numel() == 0:
            return torch.zeros(self.config.output_size, 0, device=device)
        return self._mel(tokens.to(device), 0, spks, None)

    def new_state(self) -> FlowState:
        c = self.config
        frames = c.chunk_size * c.token_mel_ratio
        return FlowState(
            token_memory=StreamMemory(c.chunk_size, c.left_chunks),
            frame_memory=StreamMemory(frames, c.left_chunks),
            step_memories=[StreamMemory(frames, c.left_chunks) for _ in range(c.n_timesteps)],
            window=torch.zeros(0, dtype=torch.long, device=self.input_embedding.weight.device),
        )

    def final_tokens(self, received: int, final: bool) -> int:
        """Tokens whose whole chunk and lookahead have arrived (all of them once the stream is final)."""
        if final:
            return received
        c = self.config
        return max(0, received - c.pre_lookahead_len) // c.chunk_size * c.chunk_size

    def advance(self, state: FlowState, tokens: Tensor, spks: Tensor, final: bool) -> tuple[Tensor, int]:
        """Add ``tokens``; returns the mel ``[80, F]`` of frames ``[first, 2 * received)`` and ``first``."""
        device = self.input_embedding.weight.device
        state.window = torch.cat([state.window.to(device), tokens.to(device)])
        state.received += tokens.numel()
        first = state.finished * self.config.token_mel_ratio
        if state.received == state.finished:
            return torch.zeros(self.config.output_size, 0, device=device), first
        finished = max(state.finished, self.final_tokens(state.received, final))
        commit = finished - state.finished
        state.token_memory.commit = commit
        for memory in (state.frame_memory, *state.step_memories):
            memory.commit = commit * self.config.token_mel_ratio
        lead = min(state.finished, _LEAD_TOKENS)
        mel = self._mel(state.window, lead, spks, state)
        for memory in (state.token_memory, state.frame_memory, *state.step_memories):
            memory.advance()
        keep_from = commit + lead - min(finished, _LEAD_TOKENS)
        state.window = state.window[keep_from:]
        state.finished = finished
        return mel, first
