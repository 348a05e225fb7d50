"""Our backbone contract on top of the ``tensorrt_llm`` engine model, without any Triton import.

The BLS ``model.py`` (templates/backbone_model.py.tmpl) only moves tensors; what a request means
lives here, typed and testable on a CPU: which tensors the engine gets, and how its streamed
responses become our prefill response and one response per token.

Hidden-state pairing (the contract: a token's HIDDEN is the state it was sampled from): the first
engine response carries the context's final-norm states (``gather_context``) and the first token,
sampled from the last context row; every later response carries one generation step's state,
computed at the previous token's position, from which its own token was sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from services.gpu_profile.engine_context import EngineContext, EngineInput
from services.triton.contracts import BackboneRequest

Tensors = dict[str, np.ndarray]
ENGINE_OUTPUTS = ("output_ids", "sequence_length", "hidden_states")


class EngineContractError(RuntimeError):
    """The engine answered in a shape this bridge was not built for (wrong engine build, no hidden output)."""


@dataclass(frozen=True)
class EngineStep:
    """One streamed engine response: the new token ids and the ``hidden_states`` rows it carried."""

    token_ids: list[int]
    hidden: np.ndarray


def engine_tensors(inp: EngineInput, job: BackboneRequest, *, end_id: int, pad_id: int) -> Tensors:
    """The ``tensorrt_llm`` inputs of one request, batch dimension included, prompt table in float32.

    ``request_output_len`` is at least 1 (the engine always samples once); with MAX_NEW_TOKENS 0 the
    bridge drops that token. The table is cast to the engine dtype by the caller (numpy has no bf16).
    """
    n = int(inp.input_ids.shape[0])
    tensors: Tensors = {
        "input_ids": inp.input_ids[None].astype(np.int32),
        "input_lengths": np.array([[n]], np.int32),
        "request_output_len": np.array([[max(job.max_new_tokens, 1)]], np.int32),
        "end_id": np.array([[end_id]], np.int32),
        "pad_id": np.array([[pad_id]], np.int32),
        "streaming": np.array([[True]]),
        "temperature": np.array([[job.sampling.temperature]], np.float32),
        "runtime_top_k": np.array([[job.sampling.top_k if job.sampling.temperature > 0 else 1]], np.int32),
        "runtime_top_p": np.array([[job.sampling.top_p]], np.float32),
    }
    if job.sampling.seed is not None:
        tensors["seed"] = np.array([[job.sampling.seed]], np.uint64)
    if inp.prompt_vocab_size:
        tensors["prompt_embedding_table"] = inp.prompt_table[None].astype(np.float32)
        tensors["prompt_vocab_size"] = np.array([[inp.prompt_vocab_size]], np.int32)
        tensors["prompt_table_extra_ids"] = inp.extra_ids[None].astype(np.uint64)
    return tensors


def response(token_ids: list[int], hidden: np.ndarray, embeddings: np.ndarray, length: int) -> Tensors:
    """Our backbone outputs (model_repository/backbone/config.pbtxt), batch dimension included."""
    return {
        "TOKEN_IDS": np.asarray(token_ids, np.int32)[None],
        "HIDDEN": np.asarray(hidden, np.float32)[None],
        "EMBEDDINGS": np.asarray(embeddings, np.float32)[None],
        "CONTEXT_LENGTH": np.array([[length]], np.int32),
    }


def backbone_responses(
    steps: Iterable[EngineStep],
    *,
    context: EngineContext,
    appended: int,
    max_new_tokens: int,
    stop_ids: frozenset[int],
    embed: Callable[[int], np.ndarray],
) -> Iterator[Tensors]:
    """Turn the engine's stream into ours, committing each yielded token to ``context``.

    ``context`` must already hold the appended positions. A stop id ends the stream unyielded and
    uncommitted, as on the CPU backbone.
    """
    width = context.width
    empty = np.zeros((0, width), np.float32)
    produced = 0
    for index, step in enumerate(steps):
        hidden = np.asarray(step.hidden, np.float32).reshape(-1, width)
        if index == 0:
            if hidden.shape[0] < max(appended, 1):
                raise EngineContractError(
                    f"the engine returned {hidden.shape[0]} context hidden rows for {appended} appended positions: "
                    "build the engine with services/gpu_profile/hidden_states.py and gather_context on"
                )
            yield response([], hidden[hidden.shape[0] - appended :] if appended else empty, empty, context.length)
            sampled_from = hidden[-1:]
        else:
            if hidden.shape[0] < 1:
                raise EngineContractError("a generation response carried no hidden_states row")
            sampled_from = hidden[-1:]
        for token_id in step.token_ids[:1]:
            if produced >= max_new_tokens or token_id in stop_ids:
                return
            context.commit_token(token_id)
            produced += 1
            yield response([token_id], sampled_from, embed(token_id)[None], context.length)
