"""The ``speech_lm`` model's contract: a turn's query and semantic vectors in, speech tokens out.

The model interleaves its input :data:`TEXT_PER_GROUP` text positions : :data:`TOKENS_PER_GROUP`
speech tokens (CosyVoice 2's bistream ratio, MinMo's voice decoder); a request without
``MAX_TOKENS`` asks for one group's worth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minmo_contracts.controls import STOP
from minmo_contracts.sampling import RANDOM_SEED, TEMPERATURE, TOP_K, Sampling, sampling_tensors
from minmo_contracts.spec import ModelContract, Tensors, TensorSpec
from minmo_contracts.validation import Getter, InvalidInputError, check_array, optional, scalar

TEXT_PER_GROUP = 5
TOKENS_PER_GROUP = 15

QUERY = TensorSpec(
    "QUERY",
    np.float32,
    (-1,),
    optional=True,
    ragged=True,
    doc="Required with START: the turn's query vector (user-input embedding ++ last hidden state).",
)
SEMANTIC = TensorSpec(
    "SEMANTIC",
    np.float32,
    (-1, -1),
    optional=True,
    ragged=True,
    doc="Semantic vectors to append before generating: [n, 2 * llm_hidden].",
)
MAX_TOKENS = TensorSpec("MAX_TOKENS", np.int32, (1,), optional=True)
UNTIL_EOS = TensorSpec(
    "UNTIL_EOS",
    np.bool_,
    (1,),
    optional=True,
    doc="After the last text group: generate until end-of-speech (or MAX_TOKENS).",
)
SPEECH_TOKENS = TensorSpec("SPEECH_TOKENS", np.int32, (-1,))
END_OF_SPEECH = TensorSpec("END_OF_SPEECH", np.bool_, (1,))

CONTRACT = ModelContract(
    "speech_lm",
    inputs=(QUERY, SEMANTIC, MAX_TOKENS, UNTIL_EOS, TEMPERATURE, TOP_K, RANDOM_SEED, STOP),
    outputs=(SPEECH_TOKENS, END_OF_SPEECH),
    decoupled=True,
)
NAME = CONTRACT.name


def request(
    semantic: np.ndarray | None = None,
    *,
    query: np.ndarray | None = None,
    max_tokens: int | None = None,
    until_eos: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
) -> Tensors:
    """Append ``semantic`` [n, 2 * llm_hidden] (``query`` [2 * llm_hidden] opens the stream) and generate.

    What is left unset takes the model's default: one group of tokens, no end-of-speech run, greedy.
    """
    tensors: dict[str, np.ndarray] = {}
    if semantic is not None:
        tensors[SEMANTIC.name] = SEMANTIC.array(semantic)
    if query is not None:
        tensors[QUERY.name] = QUERY.array(query)
    if max_tokens is not None:
        tensors[MAX_TOKENS.name] = MAX_TOKENS.scalar(max_tokens)
    if until_eos is not None:
        tensors[UNTIL_EOS.name] = UNTIL_EOS.scalar(until_eos)
    return {**tensors, **sampling_tensors(temperature=temperature, top_k=top_k, seed=seed)}


def end_request() -> Tensors:
    """Generate nothing: what goes with END to free a stream between two requests."""
    return request(max_tokens=0)


@dataclass(frozen=True)
class SpeechLMRequest:
    query: np.ndarray | None
    semantic: np.ndarray | None
    max_tokens: int
    until_eos: bool
    sampling: Sampling

    @classmethod
    def parse(cls, get: Getter, *, width: int, default_tokens: int, max_tokens_limit: int) -> SpeechLMRequest:
        query = optional(get, QUERY.name)
        if query is not None:
            check_array(QUERY.name, query, dtypes=[QUERY.dtype], ndim=1)
            if query.shape[0] != width:
                raise InvalidInputError(
                    f"input {QUERY.name} must have {width} values (2 x llm hidden), got {query.shape[0]}"
                )
        semantic = optional(get, SEMANTIC.name)
        if semantic is not None:
            check_array(SEMANTIC.name, semantic, dtypes=[SEMANTIC.dtype], ndim=2, width=width, allow_empty=True)
        max_tokens = int(scalar(MAX_TOKENS.name, get(MAX_TOKENS.name), default_tokens))
        if not 0 <= max_tokens <= max_tokens_limit:
            raise InvalidInputError(f"input {MAX_TOKENS.name} must be in [0, {max_tokens_limit}], got {max_tokens}")
        return cls(
            query=query,
            semantic=semantic if semantic is not None and semantic.size else None,
            max_tokens=max_tokens,
            until_eos=bool(scalar(UNTIL_EOS.name, get(UNTIL_EOS.name), False)),
            sampling=Sampling.parse(get),
        )


@dataclass(frozen=True)
class SpeechLMOutput:
    """One response: a speech token, or (after ``UNTIL_EOS``) none with the end-of-speech flag."""

    speech_tokens: np.ndarray  # [0] or [1] int32, ids in [0, 6561)
    end_of_speech: bool

    @classmethod
    def read(cls, outputs: Tensors) -> SpeechLMOutput:
        return cls(
            speech_tokens=SPEECH_TOKENS.read(outputs), end_of_speech=bool(END_OF_SPEECH.read(outputs).reshape(-1)[0])
        )

    def tensors(self) -> Tensors:
        return {
            SPEECH_TOKENS.name: SPEECH_TOKENS.array(self.speech_tokens),
            END_OF_SPEECH.name: END_OF_SPEECH.scalar(self.end_of_speech),
        }
