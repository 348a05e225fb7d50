"""One response's speech-token stream: CosyVoice 2's bidirectional-streaming sequence.

The sequence the LM reads is ``sos, query, T1..T5, s1..s15, T6..T10, s16..s30, ..., [rest of T],
task_id, s.., end-of-speech`` where ``T`` are projected backbone states (5 per group) and ``s`` speech
tokens (15 per group). End-of-speech is only possible after ``task_id``, which ``generate`` appends
once ``until_eos`` is asked for and every full text group has had its speech.

Inputs are fed lazily: a sampled token's embedding waits in ``_pending`` and enters the KV cache
with the next forward pass (together with the next text group, if any). State is updated before a
token is yielded, so abandoning the iterator between tokens leaves a stream that continues exactly.
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
        check_sampling(temperature, top_k, top_p)
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        if seed is not None:
            self._generator.manual_seed(seed)
        return self._generate(max_tokens, until_eos, temperature, top_k, top_p)

    def _generate(
        self, max_tokens: int, until_eos: bool, temperature: float, top_k: int, top_p: float
    ) -> Iterator[int]:
        lm, config = self._lm, self._config
        emitted = 0
        while emitted < max_tokens and not self._ended:
            # One inference_mode block per step: the mode must not leak into the caller between yields.
            with torch.inference_mode():
                if not self._final and self._group_left == 0 and not self._next_group(until_eos):
                    return
                hidden = lm.llm(self._pending, self._cache)[-1]
                self._pending = self._pending[:0]
                logits = lm.llm_decoder(hidden)
                # Slicing the logits keeps fill/unused ids out always and end-of-speech out until final.
                allowed = config.speech_token_size + 1 if self._final else config.speech_token_size
                token = sample_token(
                    logits[:allowed], temperature=temperature, top_k=top_k, top_p=top_p, generator=self._generator
                )
                if token == config.eos_id:
                    self._ended = True
                    return
                self._pending = lm.speech_embedding.weight[token : token + 1]
                if not self._final:
                    self._group_left -= 1
            emitted += 1
            yield token

    def _next_group(self, until_eos: bool) -> bool:
        """Move the next text group (or, finalizing, the rest plus ``task_id``) into the inputs."""
        per_group = self._config.text_per_group
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
