"""Triton adapter for the LLM backbone (``services.backbone``): decoupled, one session per sequence."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from services import backbone
from services.backbone.tokenizer import ENDOFTEXT
from services.triton.contracts import BackboneRequest
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing
from services.triton.tensors import InvalidInputError


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[backbone.BackboneSession] = ModelServing(args, decoupled=True)
        self.model = backbone.load(self.serving.params.weights_dir("backbone"))
        self.vocab_size = self.model.config.vocab_size
        self.width = self.model.config.hidden_size
        tokenizer = backbone.SmokeByteTokenizer()
        self.stop_ids = sorted({tokenizer.eos_id, tokenizer.special_token_id(ENDOFTEXT)})
        self.max_new_tokens = self.serving.params.get_int("max_new_tokens_limit", 2048)

    def execute(self, requests: list[Any]) -> None:
        # A cancelled generation leaves a consistent context: the session lives on.
        self.serving.stream_all(requests, self._responses, free_on_cancel=False)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _responses(self, request: Any, flags: SequenceFlags, is_cancelled: Callable[[], bool]) -> Iterator[Any]:
        job = BackboneRequest.parse(
            input_getter(request),
            vocab_size=self.vocab_size,
            width=self.width,
            max_new_tokens_limit=self.max_new_tokens,
        )
        session = self.serving.streams.open_or_get(flags, functools.partial(self._new_session, flags, job.fork_from))
        with torch.inference_mode():
            yield self._prefill(session, job)
        for token in session.generate(
            job.max_new_tokens,
            temperature=job.sampling.temperature,
            top_k=job.sampling.top_k,
            top_p=job.sampling.top_p,
            seed=job.sampling.seed,
            stop_ids=self.stop_ids,
        ):
            ids = np.array([token.token_id], dtype=np.int32)
            yield _response(ids, token.hidden[None], token.embedding[None], session.length)
            if is_cancelled():
                return

    def _new_session(self, flags: SequenceFlags, fork_from: int) -> backbone.BackboneSession:
        if not fork_from:
            return self.model.new_session()
        if fork_from == flags.stream_id:
            raise InvalidInputError("FORK_FROM must name another stream than the one being started")
        return self.serving.streams.get(fork_from).fork()

    def _prefill(self, session: backbone.BackboneSession, job: BackboneRequest) -> Any:
        if job.truncate_to >= 0:
            session.truncate(job.truncate_to)
        hidden = []
        if job.input_ids:
            hidden.append(session.append(ids=job.input_ids))
        if job.speech is not None:
            hidden.append(session.append(embeds=torch.from_numpy(job.speech)))
        if job.suffix_ids:
            hidden.append(session.append(ids=job.suffix_ids))
        states = torch.cat(hidden) if hidden else torch.zeros(0, self.width)
        return _response(np.zeros(0, dtype=np.int32), states, torch.zeros(0, self.width), session.length)


def _response(token_ids: np.ndarray, hidden: torch.Tensor, embeddings: torch.Tensor, length: int) -> Any:
    return pb_utils.InferenceResponse(
        [
            pb_utils.Tensor("TOKEN_IDS", token_ids[None]),
            pb_utils.Tensor("HIDDEN", hidden.float().numpy()[None]),
            pb_utils.Tensor("EMBEDDINGS", embeddings.float().numpy()[None]),
            pb_utils.Tensor("CONTEXT_LENGTH", np.array([[length]], dtype=np.int32)),
        ]
    )
