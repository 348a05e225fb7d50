"""The MinMo backbone: a Qwen2 causal LM and the per-session contexts it serves, many per pass.

A :class:`BackboneSession` is one growing context (KV cache) that the orchestrator feeds with token
segments and speech embeddings and samples from. Sampled tokens are appended lazily: a token is part
of the context as soon as it is sampled, but its forward pass runs only when the next token (or
segment) needs it. Sampling therefore costs no extra forward, a stop token never enters the cache,
and abandoning generation between tokens always leaves a consistent context.

Work is expressed as steps so that a scheduler can run the steps of many sessions in one pass
(:meth:`Backbone.run`): a session *prepares* a :class:`BackboneStep` (rows to append, and whether the
next token's logits are wanted), the pass runs every step at once, and a :class:`Generation` turns
the logits it gets back into the next token. ``append`` and ``generate`` are the same steps for one
session, so a session alone and a session in a batch compute the same function.
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

    def run(self, steps: Sequence[BackboneStep]) -> list[StepOutput]:
        """Run the steps of many sessions (distinct) in one pass; each session's context advances.

        Rows of every step go through one packed forward (:meth:`Qwen2Model.forward_packed`), the
        logits of every step that wants them through one ``lm_head`` product. Atomic: if it raises,
        no session changes.
        """
        if len({id(step.session) for step in steps}) != len(steps):
            raise ValueError("Backbone.run got two steps of one session: one step per session and pass")
        with torch.inference_mode():
            appending = [step for step in steps if step.rows is not None]
            lengths = [step.session._cache.length for step in appending]
            hidden: dict[int, torch.Tensor] = {}
            if appending:
                outs = self.model.forward_packed(
                    [step.rows for step in appending if step.rows is not None],
                    [step.session._cache for step in appending],
                )
                hidden = {id(step): out for step, out in zip(appending, outs, strict=True)}
            try:
                lasts = [hidden[id(s)][-1] if id(s) in hidden else s.session._last_state() for s in steps]
                wanted = [i for i, step in enumerate(steps) if step.logits]
                logits = self.logits(torch.stack([lasts[i] for i in wanted])) if wanted else None
            except BaseException:
                for step, length in zip(appending, lengths, strict=True):
                    step.session._cache.truncate(length)  # the rows past it are scratch again
                raise
            # Nothing below can fail: the sessions change only once the whole pass has succeeded.
            logits_of = dict(zip(wanted, logits if logits is not None else [], strict=False))
            outputs = []
            for i, step in enumerate(steps):
                rows = hidden.get(id(step))
                if rows is not None:
                    step.session._absorb(rows)
                    rows = rows[step.skip :]
                else:
                    rows = lasts[i].new_zeros(0, lasts[i].shape[0])
                outputs.append(StepOutput(hidden=rows, last=lasts[i], logits=logits_of.get(i)))
            return outputs


@dataclass(frozen=True)
class BackboneStep:
    """One session's share of a pass: rows to append (a pending token's embedding first), logits wanted."""

    session: BackboneSession
    rows: torch.Tensor | None  # [n, hidden] model inputs, or None to append nothing
    skip: int  # leading rows of ``rows`` that belong to the pending token, not to the caller
    logits: bool

    def split(self, max_rows: int) -> list[BackboneStep]:
        """The same append as consecutive steps of at most ``max_rows`` rows (chunked prefill).

        Run them in order, one per pass: a long prefill then shares each pass with the other
        sessions' decode steps instead of stalling them. Only the last step asks for logits.
        """
        if self.rows is None or self.rows.shape[0] <= max_rows:
            return [self]
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        n = self.rows.shape[0]
        return [
            BackboneStep(
                self.session,
                self.rows[begin : begin + max_rows],
                skip=min(max(self.skip - begin, 0), max_rows),
                logits=self.logits and begin + max_rows >= n,
            )
            for begin in range(0, n, max_rows)
        ]


@dataclass(frozen=True)
class StepOutput:
    hidden: torch.Tensor  # [n, hidden] last-layer states of the caller's rows (empty when none were appended)
    last: torch.Tensor  # [hidden] the state at the last position: what the next token is sampled from
    logits: torch.Tensor | None  # [vocab] next-token logits, when the step asked for them


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
        # A sampled token not yet run through the model; it sits at position cache.length.
        self._pending: int | None = None

    @property
    def backbone(self) -> Backbone:
        return self._backbone

    @property
    def length(self) -> int:
        """Positions in the context, a sampled-but-not-yet-computed token included."""
        return self._cache.length + (self._pending is not None)

    @property
    def max_length(self) -> int:
        return self._backbone.config.max_position_embeddings

    @property
    def cache_nbytes(self) -> int:
        return self._cache.nbytes + self._trail.rows.numel() * self._trail.rows.element_size()

    def prepare_append(self, *segments: Sequence[int] | torch.Tensor) -> BackboneStep:
        """A step appending ``segments`` in order: token id lists and speech embeddings ``[n, hidden]``.

        Validates everything (ids in the vocabulary, embedding widths, room in the context) and
        changes nothing; :meth:`Backbone.run` applies it.
        """
        if not segments:
            raise ValueError("append needs at least one segment of ids or embeddings")
        hidden_size = self._backbone.config.hidden_size
        weight = self._backbone.model.norm.weight
        parts = []
        with torch.inference_mode():
            for segment in segments:
                if isinstance(segment, torch.Tensor):
                    if segment.dim() != 2 or segment.shape[0] == 0 or segment.shape[1] != hidden_size:
                        raise ValueError(f"embeds must be [n >= 1, {hidden_size}], got {tuple(segment.shape)}")
                    parts.append(segment.to(device=weight.device, dtype=weight.dtype))
                else:
                    if len(segment) == 0:
                        raise ValueError("append got an empty id list")
                    parts.append(self._embed_ids(list(segment)))
            n = sum(part.shape[0] for part in parts)
            self._check_room(n)
            pending = [self._embed_ids([self._pending])] if self._pending is not None else []
            rows = torch.cat([*pending, *parts]) if len(pending) + len(parts) > 1 else parts[0]
        return BackboneStep(self, rows, skip=len(pending), logits=False)

    def prepare_next_token(self) -> BackboneStep:
        """A step that yields the logits of the next token (running the pending token first, if any)."""
        if self.length == 0:
            raise ValueError("the context is empty: append a prompt before generating")
        rows = None
        if self._pending is not None:
            with torch.inference_mode():
                rows = self._embed_ids([self._pending])
        return BackboneStep(self, rows, skip=0, logits=True)

    def append(self, ids: Sequence[int] | None = None, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Append token ids or speech embeddings [n, hidden]; return their last-layer states [n, hidden]."""
        if ids is not None and embeds is None:
            step = self.prepare_append(ids)
        elif embeds is not None and ids is None:
            step = self.prepare_append(embeds)
        else:
            raise ValueError("append takes exactly one of ids or embeds")
        return self._backbone.run([step])[0].hidden.clone()

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
        generation = Generation(
            self, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop_ids=stop_ids
        )
        return self._generate(generation)

    def _generate(self, generation: Generation) -> Iterator[GeneratedToken]:
        while not generation.done:
            token = generation.take(self._backbone.run([generation.prepare()])[0])
            if token is None:
                return
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

    def _last_state(self) -> torch.Tensor:
        """The last-layer state at the last computed position (no pending token may be waiting)."""
        assert self._pending is None and self._cache.length > 0, "run the pending token first"
        return self._trail.rows[self._cache.length - 1]

    def _absorb(self, hidden: torch.Tensor) -> None:
        """A pass appended ``hidden.shape[0]`` rows (the cache already counts them): keep their states."""
        self._trail.write(self._cache.length - hidden.shape[0], hidden)
        self._pending = None


class Generation:
    """One request's sampling loop over a session, advanced one token per pass by whoever runs the passes.

    ``prepare`` gives the step whose output ``take`` turns into the next token; between the two the
    session must not be touched by anyone else. Arguments are checked at construction.
    """

    def __init__(
        self,
        session: BackboneSession,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_ids: Sequence[int] = (),
    ) -> None:
        check_sampling(temperature, top_k, top_p)
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if session.length == 0:
            raise ValueError("the context is empty: append a prompt before generating")
        session._check_room(max_new_tokens)
        self.session = session
        self._left = max_new_tokens
        self._temperature, self._top_k, self._top_p = temperature, top_k, top_p
        self._generator = make_generator(seed)
        self._stop_ids = frozenset(stop_ids)
        self.done = max_new_tokens == 0

    def prepare(self) -> BackboneStep:
        return self.session.prepare_next_token()

    def take(self, output: StepOutput) -> GeneratedToken | None:
        """Sample from the step's logits; the token joins the context (pending). None: a stop id ended it."""
        assert output.logits is not None and not self.done
        token_id = sample_token(
            output.logits,
            temperature=self._temperature,
            top_k=self._top_k,
            top_p=self._top_p,
            generator=self._generator,
        )
        if token_id in self._stop_ids:
            self.done = True
            return None
        self._left -= 1
        self.done = self._left == 0
        session = self.session
        session._pending = token_id
        with torch.inference_mode():
            embedding = session._embed_ids([token_id])[0]
        return GeneratedToken(token_id, output.last.clone(), embedding)
