"""Speech tokens -> 80-bin mel at 50 Hz: CosyVoice 2's ``CausalMaskedDiffWithXvec`` for inference.

``Flow.forward`` renders a whole utterance; ``Flow.advance_batch`` continues the :class:`FlowState`
of many streams with their newly pushed tokens in one pass and returns the mel of every frame that
is new or not final yet (``Flow.advance`` is the same for one stream). Tokens whose chunk and
``pre_lookahead_len`` right context are complete are final: their keys/values and conv context go
into the state's memories and are never recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FlowConfig
from .encoder import UpsampleConformerEncoder
from .estimator import CausalConditionalDecoder
from .noise import PositionalNoise
from .streaming import BatchMemory, StreamMemory

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

    def forward(
        self, mu: Tensor, spks: Tensor, starts: Sequence[int], memories: Sequence[BatchMemory] | None = None
    ) -> Tensor:
        """``mu``: ``[B, T, 80]``, stream ``b``'s frames from ``starts[b]`` on (right-padded to ``T``);
        ``spks``: ``[B, 80]`` -> mel ``[B, T, 80]``."""
        length = mu.shape[1]
        # The Euler state accumulates in float32 whatever the served dtype; only the estimator runs in it.
        x = torch.stack([self.noise.take(start, length).T for start in starts]).to(mu.device, torch.float32)
        # a stream's conditional and unconditional rows sit side by side, as its step memories hold them
        mu_in = torch.stack([mu, torch.zeros_like(mu)], dim=1).flatten(0, 1)
        spks_in = torch.stack([spks, torch.zeros_like(spks)], dim=1).flatten(0, 1)
        cond_in = torch.zeros_like(mu_in)  # no zero-shot prompt mel
        for step in range(len(self.t_span) - 1):
            t, dt = self.t_span[step], self.t_span[step + 1] - self.t_span[step]
            memory = memories[step] if memories is not None else None
            # one flow time for every row: its embedding is computed once and broadcast
            t_in = torch.full((1,), t, dtype=torch.float32, device=mu.device)
            velocity = self.estimator(
                x.to(mu.dtype).repeat_interleave(2, dim=0), mu_in, t_in, spks_in, cond_in, memory
            ).float()
            guided = (1.0 + self.cfg_rate) * velocity[0::2] - self.cfg_rate * velocity[1::2]
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


@dataclass(frozen=True)
class _Advance:
    """One stream's share of a batched pass, worked out from its state without changing it."""

    state: FlowState
    window: Tensor  # the state's window plus the pushed tokens: ``lead`` tokens, then the pass
    received: int
    finished: int
    lead: int
    rest: Tensor  # the window the state keeps for its next pass

    @property
    def tokens(self) -> int:
        """Tokens this pass computes (all that are not final yet); 0: nothing to compute."""
        return self.received - self.state.finished

    @property
    def commit(self) -> int:
        return self.finished - self.state.finished


class FlowPass:
    """The outcome of :meth:`Flow.advance_batch`: each stream's mel, and its state changes held until commit."""

    def __init__(self, steps: list[_Advance], mels: list[Tensor], memories: list[BatchMemory], ratio: int) -> None:
        self._steps, self._memories = steps, memories
        self.mels = mels  # stream b: mel ``[80, F]`` of frames ``[firsts[b], 2 * received[b])``
        self.firsts = [step.state.finished * ratio for step in steps]
        self.received = [step.received for step in steps]

    def commit(self) -> None:
        """Write every stream's new memories, window and counters (nothing else can fail by now)."""
        for memory in self._memories:
            memory.commit()
        for step in self._steps:
            step.state.window, step.state.received, step.state.finished = step.rest, step.received, step.finished


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
        """CAM++ x-vector ``[1, 192]`` -> ``[1, 80]`` (unit-normalised first, in float32, as in training)."""
        weight = self.spk_embed_affine_layer.weight
        return self.spk_embed_affine_layer(F.normalize(embedding.float(), dim=1).to(weight.dtype))

    def forward(self, tokens: Tensor, spks: Tensor) -> Tensor:
        """Whole utterance: ``[N]`` token ids, ``[1, 80]`` speaker -> mel ``[80, 2N]``."""
        device = self.input_embedding.weight.device
        if tokens.numel() == 0:
            return torch.zeros(self.config.output_size, 0, device=device)
        h = self.encoder(self.input_embedding(tokens.to(device))[None], 0)
        return self.decoder(self.encoder_proj(h), spks, [0])[0].T  # float32: the decoder's Euler state

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
        flow = self.advance_batch([state], [tokens], spks, [final])
        flow.commit()
        return flow.mels[0], flow.firsts[0]

    def advance_batch(
        self, states: Sequence[FlowState], tokens: Sequence[Tensor], spks: Tensor, finals: Sequence[bool]
    ) -> FlowPass:
        """Add each stream's ``tokens`` in one pass (``spks``: ``[B, 80]``); no state changes before commit.

        The encoder and every Euler step run once for all streams with something to compute: passes
        are right-padded to the longest and aligned on the longest lead, padding masked everywhere.
        """
        if len({id(state) for state in states}) != len(states):
            raise ValueError("a batched flow pass takes each stream state at most once")
        steps = [self._plan(state, ids, final) for state, ids, final in zip(states, tokens, finals, strict=True)]
        device = self.input_embedding.weight.device
        mels = [torch.zeros(self.config.output_size, 0, device=device) for _ in steps]
        active = [b for b, step in enumerate(steps) if step.tokens > 0]
        memories = self._memories([steps[b] for b in active]) if active else []
        if active:
            computed = self._mel_batch([steps[b] for b in active], spks[active], memories)
            for b, mel in zip(active, computed, strict=True):
                mels[b] = mel
        return FlowPass(steps, mels, memories, self.config.token_mel_ratio)

    def _plan(self, state: FlowState, tokens: Tensor, final: bool) -> _Advance:
        device = self.input_embedding.weight.device
        window = torch.cat([state.window.to(device), tokens.to(device)])
        received = state.received + tokens.numel()
        finished = max(state.finished, self.final_tokens(received, final))
        lead = min(state.finished, _LEAD_TOKENS)
        keep_from = finished - state.finished + lead - min(finished, _LEAD_TOKENS)
        return _Advance(state, window, received, finished, lead, window[keep_from:])

    def _memories(self, steps: list[_Advance]) -> list[BatchMemory]:
        """Token memory, frame memory and one memory per Euler step (two guidance rows per stream)."""
        ratio = self.config.token_mel_ratio
        commits = [step.commit for step in steps]
        lengths = [step.tokens for step in steps]
        frame_commits, frame_lengths = [ratio * c for c in commits], [ratio * n for n in lengths]
        token = BatchMemory([step.state.token_memory for step in steps], commits, lengths)
        frame = BatchMemory([step.state.frame_memory for step in steps], frame_commits, frame_lengths)
        euler = [
            BatchMemory([step.state.step_memories[i] for step in steps], frame_commits, frame_lengths, rows=2)
            for i in range(self.config.n_timesteps)
        ]
        return [token, frame, *euler]

    def _mel_batch(self, steps: list[_Advance], spks: Tensor, memories: list[BatchMemory]) -> list[Tensor]:
        lead = max(step.lead for step in steps)
        width = lead + max(step.tokens for step in steps)
        ids, valid = self._padded_windows(steps, lead, width)
        h = self.encoder(self.input_embedding(ids), lead, memories[0], memories[1], valid)
        ratio = self.config.token_mel_ratio
        starts = [step.state.finished * ratio for step in steps]
        mel = self.decoder(self.encoder_proj(h), spks, starts, memories[2:])
        # own copies: a view would keep the whole batch's mel alive in one stream's buffer
        return [mel[b, : ratio * step.tokens].T.contiguous() for b, step in enumerate(steps)]

    def _padded_windows(self, steps: list[_Advance], lead: int, width: int) -> tuple[Tensor, Tensor | None]:
        """Token windows ``[B, width]`` with each pass starting at ``lead``, and 1.0 where an id is real (None: all)."""
        if all(step.window.numel() == width for step in steps):
            return torch.stack([step.window for step in steps]), None
        spans = [(lead - step.lead, width - lead - step.tokens) for step in steps]
        ids = torch.stack([F.pad(step.window, span) for step, span in zip(steps, spans, strict=True)])
        # In the served dtype: a float32 mask would promote the token embeddings it multiplies.
        ones = [torch.ones_like(step.window, dtype=self.input_embedding.weight.dtype) for step in steps]
        valid = torch.stack([F.pad(one, span) for one, span in zip(ones, spans, strict=True)])
        return ids, valid
