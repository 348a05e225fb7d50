"""The ``encoder`` model's contract: 16 kHz PCM chunks of one stream in, LLM-width embeddings out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minmo_contracts.spec import ModelContract, Tensors, TensorSpec
from minmo_contracts.validation import Getter, InvalidInputError, check_array, strip_batch

AUDIO = TensorSpec(
    "AUDIO",
    np.float32,
    (-1,),
    ragged=True,
    doc="PCM samples in [-1, 1]; may be empty on the END request, which flushes the tail.",
)
EMBEDDINGS = TensorSpec("EMBEDDINGS", np.float32, (-1, -1))
FRAME_OFFSET = TensorSpec(
    "FRAME_OFFSET", np.int64, (1,), doc="Index of the first returned embedding within the stream."
)
SAMPLES_NEEDED = TensorSpec(
    "SAMPLES_NEEDED",
    np.int64,
    (1,),
    doc="PCM samples the stream must still receive before its next embedding: a request with fewer comes back empty.",
)

CONTRACT = ModelContract(
    "encoder", inputs=(AUDIO,), outputs=(EMBEDDINGS, FRAME_OFFSET, SAMPLES_NEEDED), decoupled=False
)
NAME = CONTRACT.name


def request(audio: np.ndarray) -> Tensors:
    """A chunk of 16 kHz mono PCM (float32 in [-1, 1]); empty with END to flush the stream's tail."""
    return {AUDIO.name: AUDIO.array(audio)}


def end_request() -> Tensors:
    """The empty chunk that goes with END when nothing is left to encode."""
    return request(np.zeros(0, np.float32))


@dataclass(frozen=True)
class EncoderRequest:
    audio: np.ndarray

    @classmethod
    def parse(cls, get: Getter, *, end: bool) -> EncoderRequest:
        array = get(AUDIO.name)
        if array is None:
            raise InvalidInputError(f"input {AUDIO.name} is required: 16 kHz mono float32 PCM in [-1, 1]")
        audio = check_array(AUDIO.name, strip_batch(AUDIO.name, array), dtypes=[AUDIO.dtype], ndim=1, allow_empty=end)
        peak = float(np.abs(audio).max(initial=0.0))
        if peak > 1.0:
            raise InvalidInputError(
                f"input {AUDIO.name} must be float32 PCM in [-1, 1], got a peak of {peak:.1f}; "
                "divide int16 samples by 32768"
            )
        return cls(audio=audio)


@dataclass(frozen=True)
class EncoderOutput:
    """One response: the embeddings this request completed (often none) and what the stream needs next."""

    embeddings: np.ndarray  # [n, llm_dim] float32
    frame_offset: int  # index of embeddings[0] within the stream
    samples_needed: int  # 0: the model did not say (every push is then sent)

    @classmethod
    def read(cls, outputs: Tensors) -> EncoderOutput:
        needed = outputs.get(SAMPLES_NEEDED.name)
        offset = outputs.get(FRAME_OFFSET.name)
        return cls(
            embeddings=EMBEDDINGS.read(outputs),
            frame_offset=int(offset.reshape(-1)[0]) if offset is not None and offset.size else 0,
            samples_needed=int(needed.reshape(-1)[0]) if needed is not None and needed.size else 0,
        )

    def tensors(self) -> Tensors:
        return {
            EMBEDDINGS.name: EMBEDDINGS.array(self.embeddings),
            FRAME_OFFSET.name: FRAME_OFFSET.scalar(self.frame_offset),
            SAMPLES_NEEDED.name: SAMPLES_NEEDED.scalar(self.samples_needed),
        }
