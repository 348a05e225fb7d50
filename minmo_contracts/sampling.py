"""The sampling controls the two generating models share (``backbone`` and ``speech_lm``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minmo_contracts.spec import Tensors, TensorSpec
from minmo_contracts.validation import Getter, InvalidInputError, scalar

TEMPERATURE = TensorSpec("TEMPERATURE", np.float32, (1,), optional=True)
TOP_K = TensorSpec("TOP_K", np.int32, (1,), optional=True)
TOP_P = TensorSpec("TOP_P", np.float32, (1,), optional=True)
RANDOM_SEED = TensorSpec("RANDOM_SEED", np.uint64, (1,), optional=True)


def sampling_tensors(
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Tensors:
    """The controls that are set; an unset one takes the model's default (greedy, no top-k/top-p, the stream's seed)."""
    chosen = ((TEMPERATURE, temperature), (TOP_K, top_k), (TOP_P, top_p), (RANDOM_SEED, seed))
    return {spec.name: spec.scalar(value) for spec, value in chosen if value is not None}


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_k: int
    top_p: float
    seed: int | None  # None: continue the stream's own random sequence

    @classmethod
    def parse(cls, get: Getter) -> Sampling:
        temperature = float(scalar(TEMPERATURE.name, get(TEMPERATURE.name), 0.0))
        top_k = int(scalar(TOP_K.name, get(TOP_K.name), 0))
        top_p = float(scalar(TOP_P.name, get(TOP_P.name), 1.0))
        if temperature < 0:
            raise InvalidInputError(f"input {TEMPERATURE.name} must be >= 0 (0 is greedy), got {temperature}")
        if top_k < 0:
            raise InvalidInputError(f"input {TOP_K.name} must be >= 0 (0 disables it), got {top_k}")
        if not 0 < top_p <= 1:
            raise InvalidInputError(f"input {TOP_P.name} must be in (0, 1], got {top_p}")
        seed = get(RANDOM_SEED.name)
        return cls(temperature, top_k, top_p, None if seed is None else int(scalar(RANDOM_SEED.name, seed, 0)))
