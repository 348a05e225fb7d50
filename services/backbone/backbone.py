"""The MinMo backbone: a Qwen2 causal LM and the per-session context it serves.

A :class:`BackboneSession` is one growing context (KV cache) that the orchestrator feeds with token
segments and speech embeddings and samples from. Sampled tokens are appended lazily: a token is part
of the context as soon as it is yielded, but its forward pass runs only when the next token (or
segment) needs it. Yielding therefore costs no extra forward, a stop token never enters the cache,
and abandoning the iterator between tokens always leaves a consistent context.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from services.backbone.kv_cache import KVCache
from services.backbone.qwen2 import Qwen2Config, Qwen2Model
from services.backbone.sampling import check_sampling, make_generator, sample_token


@dataclass(frozen=True)
class GeneratedToken:
    """A sampled token with what MinMo's voice decoder reads from it.

    ``hidden`` is the last-layer state (after the final norm) the token was sampled from, i.e. the
    one at the position before it; ``embedding`` is the token's input embedding.
    """

    token_id: int
    hidden: torch.Tensor
    embedding: torch.Tensor


class Backbone(nn.Module):
    """HF ``Qwen2ForCausalLM`` layout: ``model.*`` plus ``lm_head`` (absent when embeddings are tied)."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        if config.vocab_size == 0:
            raise ValueError("the backbone needs a vocabulary (vocab_size > 0)")
        self.config = config
        self.model = Qwen2Model(config)
        self.lm_head = (
            None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed(ids)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            assert self.model.embed_tokens is not None
            return F.linear(hidden, self.model.embed_tokens.weight)
        return self.lm_head(hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] for a whole sequence without a cache: the reference path."""
        return self.logits(self.model(self.embed(input_ids)))

    def new_session(self) -> BackboneSession:
        return BackboneSession(self)


class _HiddenTrail:
    """Last-layer state of every cached position, so generation can resume after ``truncate``."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def write(self, start: int, hidden: torch.Tensor) -> None:
        end = start + hidden.shape[0]
        if end > self.rows.shape[0]:
            grown = self.rows.new_empty(max(end, 2 * self.rows.shape[0]), self.rows.shape[1])
            grown[:start] = self.rows[:start]
            self.rows = grown
        self.rows[start:end] = hidden

    def copy(self, length: int) -> _HiddenTrail:
        rows = self.rows.new_empty(max(length, 64), self.rows.shape[1])
        rows[:length] = self.rows[:length]
        return _HiddenTrail(rows)


class BackboneSession:
    """One conversation context on a :class:`Backbone`; not thread-safe, one user at a time."""

    def __init__(self, backbone: Backbone) -> None:
        self._backbone = backbone
        self._cache: KVCache = backbone.model.new_cache()
        self._trail = _HiddenTrail(backbone.model.norm.weight.new_empty(64, backbone.config.hidden_size))
        # A yielded token not yet run through the model; it sits at position cache.length.
        self._pending: int | None = None

    @property
    def length(self) -> int:
        """Positions in the context, a yielded-but-not-yet-computed token included."""
        return self._cache.length + (self._pending is not None)

    @property
    def max_length(self) -> int:
        return self._backbone.config.max_position_embeddings

    @property
    def cache_nbytes(self) -> int:
        return self._cache.nbytes + self._trail.rows.numel() * self._trail.rows.element_size()

    def append(self, ids: Sequence[int] | None = None, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Append token ids or speech embeddings [n, hidden]; return their last-layer states [n, hidden]."""
        if (ids is None) == (embeds is None):
            raise ValueError("append takes exactly one of ids or embeds")
        hidden_size = self._backbone.config.hidden_size
        with torch.inference_mode():
            if ids is not None:
                if len(ids) == 0:
                    raise ValueError("append got an empty id list")
                x = self._embed_ids(list(ids))
            else:
                assert embeds is not None
                if embeds.dim() != 2 or embeds.shape[0] == 0 or embeds.shape[1] != hidden_size:
                    raise ValueError(f"embeds must be [n >= 1, {hidden_size}], got {tuple(embeds.shape)}")
                weight = self._backbone.model.norm.weight
                x = embeds.to(device=weight.device, dtype=weight.dtype)
            n = x.shape[0]
            self._check_room(n)
            if self._pending is not None:
                x = torch.cat([self._embed_ids([self._pending]), x])
            hidden = self._run(x)
            self._pending = None
            return hidden[-n:].clone()

    def generate(
        self,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_ids: Sequence[int] = (),
    ) -> Iterator[GeneratedToken]:
        """Sample up to ``max_new_tokens`` tokens, each appended to the context as it is yielded.

        A sampled id in ``stop_ids`` ends generation and is neither yielded nor appended (close the
        turn with the prompt's closing tokens). Arguments are checked here, before the first token.
        """
        check_sampling(temperature, top_k, top_p)
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if self.length == 0:
            raise ValueError("the context is empty: append a prompt before generating")
        self._check_room(max_new_tokens)
        return self._generate(max_new_tokens, temperature, top_k, top_p, make_generator(seed), frozenset(stop_ids))

    def _generate(
        self,
        max_new_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        generator: torch.Generator,
        stop_ids: frozenset[int],
    ) -> Iterator[GeneratedToken]:
        for _ in range(max_new_tokens):
            # Each step is its own inference_mode block: the mode must not leak into the
            # caller's code between yields.
            with torch.inference_mode():
                if self._pending is not None:
                    last = self._run(self._embed_ids([self._pending]))[-1]
                    self._pending = None
                else:
                    last = self._trail.rows[self._cache.length - 1]
                token_id = sample_token(
                    self._backbone.logits(last), temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
                )
                if token_id in stop_ids:
                    return
                self._pending = token_id
                token = GeneratedToken(token_id, last.clone(), self._embed_ids([token_id])[0])
            yield token

    def fork(self) -> BackboneSession:
        """An independent copy of the context (the listen path while the assistant speaks)."""
        twin = BackboneSession.__new__(BackboneSession)
        twin._backbone = self._backbone
        with torch.inference_mode():
            twin._cache = self._cache.fork()
            twin._trail = self._trail.copy(self._cache.length)
        twin._pending = self._pending
        return twin

    def truncate(self, n: int) -> None:
        """Forget positions ``>= n`` (cut an interrupted assistant turn to what was played)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a context of length {self.length} to {n}")
        if n == self.length:
            return
        self._pending = None
        self._cache.truncate(n)

    def _embed_ids(self, ids: list[int]) -> torch.Tensor:
        vocab = self._backbone.config.vocab_size
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {vocab})")
        device = self._backbone.model.norm.weight.device
        return self._backbone.embed(torch.tensor(ids, dtype=torch.long, device=device))

    def _check_room(self, n: int) -> None:
        if self.length + n > self.max_length:
            raise ValueError(
                f"the context holds {self.length} positions and {n} more would exceed "
                f"max_position_embeddings {self.max_length}: truncate it or start a new session"
            )

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        start = self._cache.length
        hidden = self._backbone.model(x, self._cache)
        self._trail.write(start, hidden)
        return hidden
