"""One response's speech-token stream: CosyVoice 2's bidirectional-streaming sequence.

The sequence the LM reads is ``sos, query, T1..T5, s1..s15, T6..T10, s16..s30, ..., [rest of T],
task_id, s.., end-of-speech`` where ``T`` are projected backbone states (5 per group) and ``s`` speech
tokens (15 per group). End-of-speech is only possible after ``task_id``, which ``generate`` appends
once ``until_eos`` is asked for and every full text group has had its speech.

Inputs are fed lazily: a sampled token's embedding waits in ``_pending`` and enters the KV cache
with the next forward pass (together with the next text group, if any). State is updated before a
token is yielded, so abandoning the iterator between tokens leaves a stream that continues exactly.

A token is one step: :class:`SpeechGeneration` prepares the rows the next token needs, a pass runs
the rows of many streams at once (:meth:`SpeechLM.run`) and the generation samples from the logits
it gets back. ``generate`` is the same loop for one stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from services.backbone.sampling import check_sampling, make_generator, sample_token

if TYPE_CHECKING:
    from services.speech_lm.model import SpeechLM

SOS_ROW = 0
TASK_ID_ROW = 1


class SpeechLMStream:
    """Speech tokens for one assistant response; not thread-safe."""

    def __init__(self, lm: SpeechLM, query: torch.Tensor, *, seed: int | None = None) -> None:
        expected = 2 * lm.config.llm_hidden_size
        if query.dim() != 1 or query.shape[0] != expected:
            raise ValueError(f"query must be [{expected}], got {tuple(query.shape)}")
        self._lm = lm
        self._config = lm.config
        with torch.inference_mode():
            self._cache = lm.llm.new_cache()
            sos = lm.llm_embedding.weight[SOS_ROW : SOS_ROW + 1]
            self._pending = torch.cat([sos, lm.project(query[None])])
            self._text = self._pending.new_empty(0, self._config.width)
        self._group_left = 0
        self._final = False
        self._ended = False
        self._generator = make_generator(seed)

    @property
    def length(self) -> int:
        """Positions in the LM context, inputs waiting for the next forward pass included."""
        return self._cache.length + self._pending.shape[0]

    @property
    def queued_semantic(self) -> int:
        """Pushed semantic vectors not yet placed in the sequence."""
        return self._text.shape[0]

    @property
    def finalized(self) -> bool:
        """``task_id`` is in the sequence: no more text, end-of-speech allowed."""
        return self._final

    @property
    def ended(self) -> bool:
        """End-of-speech was sampled."""
        return self._ended

    def push_semantic(self, vectors: torch.Tensor) -> None:
        """Queue backbone vectors [n, 2*llm_hidden] (token embedding ++ last-layer state)."""
        if self._final:
            raise ValueError("the stream is finalized (generate ran with until_eos): start a new stream")
        with torch.inference_mode():
            self._text = torch.cat([self._text, self._lm.project(vectors)])

    def generate(
        self,
        max_tokens: int,
        *,
        until_eos: bool = False,
        temperature: float = 1.0,
        top_k: int = 25,
        top_p: float = 0.8,
        seed: int | None = None,
    ) -> Iterator[int]:
        """Yield up to ``max_tokens`` speech ids in ``[0, speech_token_size)``.

        Without ``until_eos`` it emits exactly ``tokens_per_group`` ids per queued full text group and
        stops when no full group is left. With ``until_eos`` it then appends the remaining text and
        ``task_id`` and runs until end-of-speech (not yielded) or ``max_tokens``; later calls continue
        that final run. ``seed`` reseeds the stream's sampler. Defaults are CosyVoice 2's top-k/top-p.
        """
        generation = SpeechGeneration(
            self, max_tokens, until_eos=until_eos, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed
        )
        return self._generate(generation)

    def _generate(self, generation: SpeechGeneration) -> Iterator[int]:
        while (rows := generation.prepare()) is not None:
            token = generation.take(self._lm.run([(self, rows)])[0])
            if token is not None:
                yield token

    def _next_rows(self, until_eos: bool) -> torch.Tensor | None:
        """The inputs the next token needs (moving the next text group in), or None if none can be made now."""
        if self._ended:
            return None
        if not self._final and self._group_left == 0 and not self._next_group(until_eos):
            return None
        return self._pending

    def _absorbed(self) -> None:
        """A pass ran the pending inputs."""
        self._pending = self._pending[:0]

    def _take(self, logits: torch.Tensor, generator_args: tuple[float, int, float]) -> int | None:
        """Sample the next token from ``logits`` [num_ids]; None when it is end-of-speech (the stream ends)."""
        config = self._config
        temperature, top_k, top_p = generator_args
        # Slicing the logits keeps fill/unused ids out always and end-of-speech out until final.
        allowed = config.speech_token_size + 1 if self._final else config.speech_token_size
        token = sample_token(
            logits[:allowed], temperature=temperature, top_k=top_k, top_p=top_p, generator=self._generator
        )
        if token == config.eos_id:
            self._ended = True
            return None
        with torch.inference_mode():
            self._pending = self._lm.speech_embedding.weight[token : token + 1]
        if not self._final:
            self._group_left -= 1
        return token

    def _next_group(self, until_eos: bool) -> bool:
        """Move the next text group (or, finalizing, the rest plus ``task_id``) into the inputs."""
        per_group = self._config.text_per_group
        with torch.inference_mode():
            if self._text.shape[0] >= per_group:
                group, self._text = self._text[:per_group], self._text[per_group:]
                self._pending = torch.cat([self._pending, group])
                self._group_left = self._config.tokens_per_group
                return True
            if not until_eos:
                return False
            task_id = self._lm.llm_embedding.weight[TASK_ID_ROW : TASK_ID_ROW + 1]
            self._pending = torch.cat([self._pending, self._text, task_id])
            self._text = self._text[:0]
        self._final = True
        return True


class SpeechGeneration:
    """One request's loop over a stream: at most ``max_tokens`` speech tokens, one per pass.

    ``prepare`` gives the rows the next token needs (None: this request is done); a pass turns them into
    logits (:meth:`SpeechLM.run`, many streams at once); ``take`` samples the token (None when it was
    end-of-speech). Arguments are checked at construction; ``seed`` reseeds the stream's sampler.
    """

    def __init__(
        self,
        stream: SpeechLMStream,
        max_tokens: int,
        *,
        until_eos: bool = False,
        temperature: float = 1.0,
        top_k: int = 25,
        top_p: float = 0.8,
        seed: int | None = None,
    ) -> None:
        check_sampling(temperature, top_k, top_p)
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        if seed is not None:
            stream._generator.manual_seed(seed)
        self.stream = stream
        self.emitted = 0
        self._max_tokens = max_tokens
        self._until_eos = until_eos
        self._sampling = (temperature, top_k, top_p)

    @property
    def ended(self) -> bool:
        """End-of-speech was sampled (now or by an earlier request of the stream)."""
        return self.stream.ended

    def prepare(self) -> torch.Tensor | None:
        if self.emitted >= self._max_tokens:
            return None
        return self.stream._next_rows(self._until_eos)

    def take(self, logits: torch.Tensor) -> int | None:
        token = self.stream._take(logits, self._sampling)
        if token is not None:
            self.emitted += 1
        return token
