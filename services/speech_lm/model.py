"""MinMo's voice decoder: the output projector and CosyVoice 2's speech-token LM (``Qwen2LM``).

Parameter names follow CosyVoice 2's ``Qwen2LM`` (``llm_embedding``, ``speech_embedding``,
``llm_decoder``) and MinMo's ``output_projector``. CosyVoice nests the Qwen2 body as
``llm.model.model.*`` (inside ``Qwen2Encoder`` and HF ``Qwen2ForCausalLM``); here it is ``llm.*``,
and its text ``embed_tokens`` and ``lm_head`` are dropped: in MinMo the text side of the sequence is
always the projected backbone states, never CosyVoice text ids. The importer strips the prefix.

Vocabulary of ``speech_embedding`` / ``llm_decoder``: ids ``[0, speech_token_size)`` are FSQ speech
tokens, ``speech_token_size`` is end-of-speech, ``+1`` is unused at inference and ``+2`` is the
"fill" id CosyVoice trains to mark the end of a 15-token group (here groups are counted instead).
``llm_embedding`` row 0 is the start-of-sequence vector, row 1 the task id that precedes the final
speech run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import nn

from services.backbone.qwen2 import Qwen2Config, Qwen2Model
from services.common.config import check_fields
from services.speech_lm.stream import SpeechLMStream


@dataclass(frozen=True)
class SpeechLMConfig:
    """``llm_hidden_size`` is the backbone width; the projector reads 2x that (embedding ++ hidden)."""

    llm_hidden_size: int
    body: Qwen2Config
    speech_token_size: int = 6561
    text_per_group: int = 5
    tokens_per_group: int = 15

    def __post_init__(self) -> None:
        if self.body.vocab_size != 0:
            raise ValueError("the speech LM body takes embeddings only: body.vocab_size must be 0")
        if self.text_per_group < 1 or self.tokens_per_group < 1:
            raise ValueError("text_per_group and tokens_per_group must be positive")

    @property
    def width(self) -> int:
        return self.body.hidden_size

    @property
    def eos_id(self) -> int:
        return self.speech_token_size

    @property
    def num_ids(self) -> int:
        return self.speech_token_size + 3

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["body"] = self.body.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        check_fields(cls, d)
        return cls(**{**d, "body": Qwen2Config.from_dict(dict(d["body"]))})

    @classmethod
    def preset(cls, name: str) -> Self:
        """``minmo``: CosyVoice 2's Qwen2.5-0.5B body after a 3584-wide backbone. ``smoke``: 128 wide."""
        if name == "minmo":
            body = Qwen2Config(
                vocab_size=0,
                hidden_size=896,
                intermediate_size=4864,
                num_hidden_layers=24,
                num_attention_heads=14,
                num_key_value_heads=2,
                rope_theta=1_000_000.0,
                rms_norm_eps=1e-6,
                max_position_embeddings=32768,
            )
            return cls(llm_hidden_size=3584, body=body)
        if name == "smoke":
            body = Qwen2Config(
                vocab_size=0,
                hidden_size=128,
                intermediate_size=384,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=4096,
            )
            return cls(llm_hidden_size=256, body=body)
        raise ValueError(f"unknown SpeechLMConfig preset {name!r}: expected 'smoke' or 'minmo'")


class SpeechLM(nn.Module):
    def __init__(self, config: SpeechLMConfig) -> None:
        super().__init__()
        self.config = config
        self.output_projector = nn.Linear(2 * config.llm_hidden_size, config.width)
        self.llm = Qwen2Model(config.body)
        self.llm_embedding = nn.Embedding(2, config.width)
        self.speech_embedding = nn.Embedding(config.num_ids, config.width)
        self.llm_decoder = nn.Linear(config.width, config.num_ids)

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        """Backbone [n, 2*llm_hidden] (token embedding ++ last-layer state) to speech-LM inputs [n, width]."""
        expected = 2 * self.config.llm_hidden_size
        if vectors.dim() != 2 or vectors.shape[1] != expected:
            raise ValueError(f"semantic vectors must be [n, {expected}], got {tuple(vectors.shape)}")
        weight = self.output_projector.weight
        return self.output_projector(vectors.to(device=weight.device, dtype=weight.dtype))

    def new_stream(self, query: torch.Tensor, *, seed: int | None = None) -> SpeechLMStream:
        """Start one response's speech; ``query`` [2*llm_hidden] is the user-input embedding ++ hidden state.

        ``seed`` seeds the stream's sampler once, so successive ``generate`` calls continue one
        random sequence instead of repeating it.
        """
        return SpeechLMStream(self, query, seed=seed)

    def run(self, work: Sequence[tuple[SpeechLMStream, torch.Tensor]]) -> list[torch.Tensor]:
        """Next-token logits ``[num_ids]`` for many streams (distinct) in one packed pass.

        ``work`` pairs each stream with the rows its next token needs (``SpeechGeneration.prepare``).
        Atomic: if it raises, no stream changes, so the caller may retry the streams one at a time.
        """
        with torch.inference_mode():
            caches = [stream._cache for stream, _ in work]
            lengths = [cache.length for cache in caches]
            hidden = self.llm.forward_packed([rows for _, rows in work], caches)
            try:
                logits = self.llm_decoder(torch.stack([rows[-1] for rows in hidden]))
            except BaseException:
                for cache, length in zip(caches, lengths, strict=True):
                    cache.truncate(length)  # the rows past it are scratch again
                raise
            for stream, _ in work:
                stream._absorbed()
            return list(logits)
