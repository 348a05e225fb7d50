"""The ``duplex`` model's contract: backbone hidden states in, turn-taking probabilities out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minmo_contracts.spec import ModelContract, Tensors, TensorSpec
from minmo_contracts.validation import Getter, InvalidInputError, check_array, optional

HIDDEN = TensorSpec("HIDDEN", np.float32, (-1, -1), ragged=True)
SPEAKING = TensorSpec(
    "SPEAKING",
    np.bool_,
    (-1,),
    ragged=True,
    doc="Whether the assistant is speaking during each frame (one value broadcasts to all frames).",
)
PROBS = TensorSpec("PROBS", np.float32, (-1, 3), doc="Columns: KEEP_LISTENING, RESPOND_NOW, STOP_SPEAKING.")

CONTRACT = ModelContract("duplex", inputs=(HIDDEN, SPEAKING), outputs=(PROBS,), decoupled=False)
NAME = CONTRACT.name


def request(hidden: np.ndarray, *, speaking: bool) -> Tensors:
    """New frames of backbone hidden states [n, llm_dim], all spoken over (or not) by the assistant."""
    return {HIDDEN.name: HIDDEN.array(hidden), SPEAKING.name: SPEAKING.array([speaking])}


def end_request() -> Tensors:
    """No frames: what goes with END to free the stream's window."""
    return {HIDDEN.name: HIDDEN.array(np.zeros((0, 1), np.float32)), SPEAKING.name: SPEAKING.array(np.zeros(0, bool))}


@dataclass(frozen=True)
class DuplexRequest:
    hidden: np.ndarray
    speaking: np.ndarray

    @classmethod
    def parse(cls, get: Getter, *, width: int, end: bool) -> DuplexRequest:
        """Frames are required except on the END request, which may only close the stream."""
        hidden = optional(get, HIDDEN.name)
        speaking = optional(get, SPEAKING.name)
        if hidden is None or speaking is None:
            raise InvalidInputError(f"inputs {HIDDEN.name} [n, llm_dim] and {SPEAKING.name} [n] or [1] are required")
        if end and hidden.size == 0:
            return cls(hidden=np.zeros((0, width), np.float32), speaking=np.zeros(0, np.bool_))
        check_array(HIDDEN.name, hidden, dtypes=[HIDDEN.dtype], ndim=2, width=width)
        check_array(SPEAKING.name, speaking, dtypes=[SPEAKING.dtype], ndim=1)
        if speaking.shape[0] not in (1, hidden.shape[0]):
            raise InvalidInputError(
                f"input {SPEAKING.name} must have 1 or {hidden.shape[0]} values, got {speaking.shape[0]}"
            )
        return cls(hidden=hidden, speaking=np.broadcast_to(speaking, (hidden.shape[0],)).copy())


@dataclass(frozen=True)
class DuplexOutput:
    probs: np.ndarray  # [n, 3] float32, one row per frame sent

    @classmethod
    def read(cls, outputs: Tensors) -> DuplexOutput:
        return cls(probs=PROBS.read(outputs))

    def tensors(self) -> Tensors:
        return {PROBS.name: PROBS.array(self.probs)}
