"""Typed views of the five models' request tensors (the contracts in ``model_repository/*/config.pbtxt``).

Each ``parse`` takes a getter that returns an input tensor as numpy (batch dimension included) or
None when absent, so the same validation runs inside Triton and in plain unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.triton.tensors import InvalidInputError, check_array, scalar, strip_batch

Getter = Callable[[str], "np.ndarray | None"]


def _optional(get: Getter, name: str) -> np.ndarray | None:
    array = get(name)
    return None if array is None else strip_batch(name, array)


def _ids(get: Getter, name: str, vocab_size: int) -> list[int]:
    array = _optional(get, name)
    if array is None:
        return []
    check_array(name, array, dtypes=[np.int32, np.int64], ndim=1, allow_empty=True)
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise InvalidInputError(
            f"input {name} holds ids outside [0, {vocab_size}): min {array.min()}, max {array.max()}"
        )
    return [int(x) for x in array]


@dataclass(frozen=True)
class EncoderRequest:
    audio: np.ndarray

    @classmethod
    def parse(cls, get: Getter, *, end: bool) -> EncoderRequest:
        array = get("AUDIO")
        if array is None:
            raise InvalidInputError("input AUDIO is required: 16 kHz mono float32 PCM in [-1, 1]")
        audio = check_array("AUDIO", strip_batch("AUDIO", array), dtypes=[np.float32], ndim=1, allow_empty=end)
        peak = float(np.abs(audio).max(initial=0.0))
        if peak > 1.0:
            raise InvalidInputError(
                f"input AUDIO must be float32 PCM in [-1, 1], got a peak of {peak:.1f}; divide int16 samples by 32768"
            )
        return cls(audio=audio)


@dataclass(frozen=True)
class DuplexRequest:
    hidden: np.ndarray
    speaking: np.ndarray

    @classmethod
    def parse(cls, get: Getter, *, width: int, end: bool) -> DuplexRequest:
        """Frames are required except on the END request, which may only close the stream."""
        hidden = _optional(get, "HIDDEN")
        speaking = _optional(get, "SPEAKING")
        if hidden is None or speaking is None:
            raise InvalidInputError("inputs HIDDEN [n, llm_dim] and SPEAKING [n] or [1] are required")
        if end and hidden.size == 0:
            return cls(hidden=np.zeros((0, width), np.float32), speaking=np.zeros(0, np.bool_))
        check_array("HIDDEN", hidden, dtypes=[np.float32], ndim=2, width=width)
        check_array("SPEAKING", speaking, dtypes=[np.bool_], ndim=1)
        if speaking.shape[0] not in (1, hidden.shape[0]):
            raise InvalidInputError(f"input SPEAKING must have 1 or {hidden.shape[0]} values, got {speaking.shape[0]}")
        return cls(hidden=hidden, speaking=np.broadcast_to(speaking, (hidden.shape[0],)).copy())


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_k: int
    top_p: float
    seed: int | None  # None: continue the stream's own random sequence

    @classmethod
    def parse(cls, get: Getter) -> Sampling:
        temperature = float(scalar("TEMPERATURE", get("TEMPERATURE"), 0.0))
        top_k = int(scalar("TOP_K", get("TOP_K"), 0))
        top_p = float(scalar("TOP_P", get("TOP_P"), 1.0))
        if temperature < 0:
            raise InvalidInputError(f"input TEMPERATURE must be >= 0 (0 is greedy), got {temperature}")
        if top_k < 0:
            raise InvalidInputError(f"input TOP_K must be >= 0 (0 disables it), got {top_k}")
        if not 0 < top_p <= 1:
            raise InvalidInputError(f"input TOP_P must be in (0, 1], got {top_p}")
        seed = get("RANDOM_SEED")
        return cls(temperature, top_k, top_p, None if seed is None else int(scalar("RANDOM_SEED", seed, 0)))


@dataclass(frozen=True)
class BackboneRequest:
    input_ids: list[int]
    speech: np.ndarray | None
    suffix_ids: list[int]
    truncate_to: int
    fork_from: int
    max_new_tokens: int
    sampling: Sampling

    @classmethod
    def parse(cls, get: Getter, *, vocab_size: int, width: int, max_new_tokens_limit: int) -> BackboneRequest:
        speech = _optional(get, "SPEECH_EMBEDDINGS")
        if speech is not None:
            check_array("SPEECH_EMBEDDINGS", speech, dtypes=[np.float32], ndim=2, width=width, allow_empty=True)
        max_new = int(scalar("MAX_NEW_TOKENS", get("MAX_NEW_TOKENS"), 0))
        if not 0 <= max_new <= max_new_tokens_limit:
            raise InvalidInputError(f"input MAX_NEW_TOKENS must be in [0, {max_new_tokens_limit}], got {max_new}")
        truncate_to = int(scalar("TRUNCATE_TO", get("TRUNCATE_TO"), -1))
        if truncate_to < -1:
            raise InvalidInputError(f"input TRUNCATE_TO must be -1 (keep all) or a context length, got {truncate_to}")
        return cls(
            input_ids=_ids(get, "INPUT_IDS", vocab_size),
            speech=speech if speech is not None and speech.size else None,
            suffix_ids=_ids(get, "SUFFIX_IDS", vocab_size),
            truncate_to=truncate_to,
            fork_from=int(scalar("FORK_FROM", get("FORK_FROM"), 0)),
            max_new_tokens=max_new,
            sampling=Sampling.parse(get),
        )


@dataclass(frozen=True)
class SpeechLMRequest:
    query: np.ndarray | None
    semantic: np.ndarray | None
    max_tokens: int
    until_eos: bool
    sampling: Sampling

    @classmethod
    def parse(cls, get: Getter, *, width: int, default_tokens: int, max_tokens_limit: int) -> SpeechLMRequest:
        query = _optional(get, "QUERY")
        if query is not None:
            check_array("QUERY", query, dtypes=[np.float32], ndim=1)
            if query.shape[0] != width:
                raise InvalidInputError(f"input QUERY must have {width} values (2 x llm hidden), got {query.shape[0]}")
        semantic = _optional(get, "SEMANTIC")
        if semantic is not None:
            check_array("SEMANTIC", semantic, dtypes=[np.float32], ndim=2, width=width, allow_empty=True)
        max_tokens = int(scalar("MAX_TOKENS", get("MAX_TOKENS"), default_tokens))
        if not 0 <= max_tokens <= max_tokens_limit:
            raise InvalidInputError(f"input MAX_TOKENS must be in [0, {max_tokens_limit}], got {max_tokens}")
        return cls(
            query=query,
            semantic=semantic if semantic is not None and semantic.size else None,
            max_tokens=max_tokens,
            until_eos=bool(scalar("UNTIL_EOS", get("UNTIL_EOS"), False)),
            sampling=Sampling.parse(get),
        )


@dataclass(frozen=True)
class VocoderRequest:
    tokens: np.ndarray
    speaker: np.ndarray | None

    @classmethod
    def parse(cls, get: Getter, *, token_count: int, speaker_dim: int, end: bool) -> VocoderRequest:
        tokens = _optional(get, "TOKENS")
        if tokens is None:
            raise InvalidInputError("input TOKENS is required (speech token ids, may be empty on the END request)")
        check_array("TOKENS", tokens, dtypes=[np.int32, np.int64], ndim=1, allow_empty=end)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= token_count):
            raise InvalidInputError(f"input TOKENS holds ids outside [0, {token_count})")
        speaker = _optional(get, "SPEAKER")
        if speaker is not None:
            check_array("SPEAKER", speaker, dtypes=[np.float32], ndim=1)
            if speaker.shape[0] != speaker_dim:
                raise InvalidInputError(f"input SPEAKER must have {speaker_dim} values, got {speaker.shape[0]}")
        return cls(tokens=tokens.astype(np.int64), speaker=speaker)
