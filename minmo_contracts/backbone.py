"""The ``backbone`` model's contract: append to a stream's context, then stream generated tokens.

A request appends ``INPUT_IDS``, ``SPEECH_EMBEDDINGS`` and ``SUFFIX_IDS`` (in that order, each
optional) after an optional ``TRUNCATE_TO``; with START and ``FORK_FROM`` the stream begins as a copy
of another. The first response is the prefill's (no token, the appended positions' hidden states);
each later one carries one generated token, up to ``MAX_NEW_TOKENS``. The GPU backbone keeps exactly
this contract (``services.gpu_profile``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from minmo_contracts.controls import STOP
from minmo_contracts.sampling import RANDOM_SEED, TEMPERATURE, TOP_K, TOP_P, Sampling, sampling_tensors
from minmo_contracts.spec import ModelContract, Tensors, TensorSpec
from minmo_contracts.validation import Getter, InvalidInputError, check_array, optional, scalar, token_ids

INPUT_IDS = TensorSpec(
    "INPUT_IDS",
    np.int32,
    (-1,),
    optional=True,
    ragged=True,
    doc="Appended in this order: INPUT_IDS, SPEECH_EMBEDDINGS, SUFFIX_IDS; each optional.",
)
SPEECH_EMBEDDINGS = TensorSpec("SPEECH_EMBEDDINGS", np.float32, (-1, -1), optional=True, ragged=True)
SUFFIX_IDS = TensorSpec("SUFFIX_IDS", np.int32, (-1,), optional=True, ragged=True)
TRUNCATE_TO = TensorSpec(
    "TRUNCATE_TO",
    np.int32,
    (1,),
    optional=True,
    doc="Forget context positions >= this before appending (barge-in truncation); -1 keeps all.",
)
FORK_FROM = TensorSpec(
    "FORK_FROM",
    np.uint64,
    (1,),
    optional=True,
    doc="With START: the new stream starts as a copy of this stream's context (listen while speaking).",
)
MAX_NEW_TOKENS = TensorSpec("MAX_NEW_TOKENS", np.int32, (1,), optional=True)

TOKEN_IDS = TensorSpec(
    "TOKEN_IDS", np.int32, (-1,), doc="Empty for the prefill response; one id per generation response."
)
HIDDEN = TensorSpec(
    "HIDDEN",
    np.float32,
    (-1, -1),
    doc="Last-layer hidden states: of the appended positions (prefill) or the one the token was sampled from.",
)
EMBEDDINGS = TensorSpec(
    "EMBEDDINGS", np.float32, (-1, -1), doc="Input embeddings of the generated tokens (empty for prefill)."
)
CONTEXT_LENGTH = TensorSpec("CONTEXT_LENGTH", np.int32, (1,))

Ids = Sequence[int] | np.ndarray  # token ids, any integer dtype: they are sent as int32

CONTRACT = ModelContract(
    "backbone",
    inputs=(
        INPUT_IDS,
        SPEECH_EMBEDDINGS,
        SUFFIX_IDS,
        TRUNCATE_TO,
        FORK_FROM,
        MAX_NEW_TOKENS,
        TEMPERATURE,
        TOP_K,
        TOP_P,
        RANDOM_SEED,
        STOP,
    ),
    outputs=(TOKEN_IDS, HIDDEN, EMBEDDINGS, CONTEXT_LENGTH),
    decoupled=True,
)
NAME = CONTRACT.name


def append_request(
    ids: Ids = (),
    speech: np.ndarray | None = None,
    suffix: Ids = (),
    *,
    truncate_to: int = -1,
    fork_from: int = 0,
) -> Tensors:
    """Append ``ids``, ``speech`` rows [n, llm_dim] and ``suffix`` (after cutting the context to ``truncate_to``).

    ``INPUT_IDS`` is always sent (empty when there are none), so a request is never without inputs;
    the others only when they say something.
    """
    tensors = {INPUT_IDS.name: INPUT_IDS.array(ids)}
    if speech is not None and len(speech):
        tensors[SPEECH_EMBEDDINGS.name] = SPEECH_EMBEDDINGS.array(speech)
    if len(suffix):
        tensors[SUFFIX_IDS.name] = SUFFIX_IDS.array(suffix)
    if truncate_to >= 0:
        tensors[TRUNCATE_TO.name] = TRUNCATE_TO.scalar(truncate_to)
    if fork_from:
        tensors[FORK_FROM.name] = FORK_FROM.scalar(fork_from)
    return tensors


def generate_request(
    ids: Ids = (),
    *,
    max_new_tokens: int,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Tensors:
    """Append ``ids`` (a prompt's end), generate up to ``max_new_tokens``; unset sampling: the model's default."""
    return {
        INPUT_IDS.name: INPUT_IDS.array(ids),
        MAX_NEW_TOKENS.name: MAX_NEW_TOKENS.scalar(max_new_tokens),
        **sampling_tensors(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed),
    }


def end_request() -> Tensors:
    """Nothing to append or generate: what goes with END to close the stream."""
    return append_request()


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
        speech = optional(get, SPEECH_EMBEDDINGS.name)
        if speech is not None:
            check_array(
                SPEECH_EMBEDDINGS.name, speech, dtypes=[SPEECH_EMBEDDINGS.dtype], ndim=2, width=width, allow_empty=True
            )
        max_new = int(scalar(MAX_NEW_TOKENS.name, get(MAX_NEW_TOKENS.name), 0))
        if not 0 <= max_new <= max_new_tokens_limit:
            raise InvalidInputError(
                f"input {MAX_NEW_TOKENS.name} must be in [0, {max_new_tokens_limit}], got {max_new}"
            )
        truncate_to = int(scalar(TRUNCATE_TO.name, get(TRUNCATE_TO.name), -1))
        if truncate_to < -1:
            raise InvalidInputError(
                f"input {TRUNCATE_TO.name} must be -1 (keep all) or a context length, got {truncate_to}"
            )
        return cls(
            input_ids=token_ids(get, INPUT_IDS.name, vocab_size),
            speech=speech if speech is not None and speech.size else None,
            suffix_ids=token_ids(get, SUFFIX_IDS.name, vocab_size),
            truncate_to=truncate_to,
            fork_from=int(scalar(FORK_FROM.name, get(FORK_FROM.name), 0)),
            max_new_tokens=max_new,
            sampling=Sampling.parse(get),
        )


@dataclass(frozen=True)
class BackboneOutput:
    """One response: the prefill's (no token) or one generated token's."""

    token_ids: np.ndarray  # [0] for the prefill response, [1] for a token
    hidden: np.ndarray  # [n, llm_dim]: the appended positions' states, or the state the token was sampled from
    embeddings: np.ndarray  # [n, llm_dim]: the token's input embedding (empty for prefill)
    context_length: int  # positions in the stream's context after this response

    @property
    def token_id(self) -> int | None:
        """The generated token, or None for the prefill response."""
        return int(self.token_ids[0]) if self.token_ids.size else None

    @classmethod
    def read(cls, outputs: Tensors) -> BackboneOutput:
        return cls(
            token_ids=TOKEN_IDS.read(outputs),
            hidden=HIDDEN.read(outputs),
            embeddings=EMBEDDINGS.read(outputs),
            context_length=int(CONTEXT_LENGTH.read(outputs)[0]),
        )

    def tensors(self) -> Tensors:
        return {
            TOKEN_IDS.name: TOKEN_IDS.array(self.token_ids),
            HIDDEN.name: HIDDEN.array(self.hidden),
            EMBEDDINGS.name: EMBEDDINGS.array(self.embeddings),
            CONTEXT_LENGTH.name: CONTEXT_LENGTH.scalar(self.context_length),
        }
