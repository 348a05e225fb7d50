"""Our backbone contract on top of the TensorRT-LLM executor's stream, without any Triton import.

The GPU backbone ``model.py`` (templates/backbone_model.py.tmpl) only moves tensors; what a response
means lives here (and what a request is in :mod:`services.gpu_profile.executor_requests`), typed and
testable on a CPU: how the executor's streamed results become our prefill response and one response
per token.

Hidden-state pairing (the contract: a token's HIDDEN is the state it was sampled from): the first
engine response carries the context's final-norm states (``gather_context``) and the first token,
sampled from the last context row; every later response carries one generation step's state,
computed at the previous token's position, from which its own token was sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from minmo_contracts.backbone import BackboneOutput
from services.gpu_profile.engine_context import EngineContext
from services.triton.contracts import batched

Tensors = dict[str, np.ndarray]


class EngineContractError(RuntimeError):
    """The engine answered in a shape this bridge was not built for (wrong engine build, no hidden output)."""


@dataclass(frozen=True)
class EngineStep:
    """One streamed engine response: the new token ids and the ``hidden_states`` rows it carried."""

    token_ids: list[int]
    hidden: np.ndarray


def response(token_ids: list[int], hidden: np.ndarray, embeddings: np.ndarray, length: int) -> Tensors:
    """Our backbone outputs (:class:`minmo_contracts.backbone.BackboneOutput`), batch dimension included."""
    return batched(BackboneOutput(np.asarray(token_ids, np.int32), hidden, embeddings, length).tensors())


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
