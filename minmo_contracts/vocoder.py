"""The ``vocoder`` model's contract (token2wav): speech tokens of one turn in, 24 kHz PCM out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from minmo_contracts.controls import STOP
from minmo_contracts.spec import ModelContract, Tensors, TensorSpec
from minmo_contracts.validation import Getter, InvalidInputError, check_array, optional

TOKENS = TensorSpec(
    "TOKENS",
    np.int32,
    (-1,),
    optional=True,
    ragged=True,
    doc="Required on every request but a STOP (the model says so when it is missing).",
)
SPEAKER = TensorSpec(
    "SPEAKER",
    np.float32,
    (-1,),
    optional=True,
    ragged=True,
    doc="Optional with START: a 192-dim speaker embedding (CAM++); the default voice otherwise.",
)
AUDIO = TensorSpec("AUDIO", np.float32, (-1,))
SAMPLE_OFFSET = TensorSpec("SAMPLE_OFFSET", np.int64, (1,), doc="Index of the first returned sample within the stream.")

CONTRACT = ModelContract("vocoder", inputs=(TOKENS, SPEAKER, STOP), outputs=(AUDIO, SAMPLE_OFFSET), decoupled=True)
NAME = CONTRACT.name


def request(tokens: Sequence[int] | np.ndarray, *, speaker: np.ndarray | None = None) -> Tensors:
    """Speech tokens to render (``speaker`` [192] only with START: the voice of the whole stream)."""
    tensors = {TOKENS.name: TOKENS.array(tokens)}
    if speaker is not None:
        tensors[SPEAKER.name] = SPEAKER.array(speaker)
    return tensors


def end_request() -> Tensors:
    """No tokens: with END it flushes the held-back overlap (or only frees the stream)."""
    return request(np.zeros(0, np.int32))


@dataclass(frozen=True)
class VocoderRequest:
    tokens: np.ndarray
    speaker: np.ndarray | None

    @classmethod
    def parse(cls, get: Getter, *, token_count: int, speaker_dim: int, end: bool) -> VocoderRequest:
        tokens = optional(get, TOKENS.name)
        if tokens is None:
            raise InvalidInputError(
                f"input {TOKENS.name} is required (speech token ids, may be empty on the END request)"
            )
        check_array(TOKENS.name, tokens, dtypes=[np.int32, np.int64], ndim=1, allow_empty=end)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= token_count):
            raise InvalidInputError(f"input {TOKENS.name} holds ids outside [0, {token_count})")
        speaker = optional(get, SPEAKER.name)
        if speaker is not None:
            check_array(SPEAKER.name, speaker, dtypes=[SPEAKER.dtype], ndim=1)
            if speaker.shape[0] != speaker_dim:
                raise InvalidInputError(f"input {SPEAKER.name} must have {speaker_dim} values, got {speaker.shape[0]}")
        return cls(tokens=tokens.astype(np.int64), speaker=speaker)


@dataclass(frozen=True)
class VocoderOutput:
    """One response: the audio this request completed (960 samples per token once the stream ends)."""

    audio: np.ndarray  # [n] float32 PCM at 24 kHz
    sample_offset: int  # index of audio[0] within the stream

    @classmethod
    def read(cls, outputs: Tensors) -> VocoderOutput:
        return cls(audio=AUDIO.read(outputs), sample_offset=int(SAMPLE_OFFSET.read(outputs).reshape(-1)[0]))

    def tensors(self) -> Tensors:
        return {AUDIO.name: AUDIO.array(self.audio), SAMPLE_OFFSET.name: SAMPLE_OFFSET.scalar(self.sample_offset)}
