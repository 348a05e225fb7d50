"""Triton adapter for the LLM backbone (``services.backbone``): decoupled, one session per sequence.

Every request is a job on the model's step scheduler: its prefill (chunked) and then one token per
step, beside the steps of every other session (``services.triton.scheduler``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from minmo_contracts.backbone import BackboneOutput, BackboneRequest
from services import backbone
from services.backbone.tokenizer import ENDOFTEXT
from services.triton.batching import JobSteps, Work
from services.triton.contracts import response
from services.triton.precision import serve
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing
from services.triton.tensors import InvalidInputError


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[backbone.BackboneSession] = ModelServing(args, decoupled=True, kernel=self._step)
        # The `dtype` parameter (float32 unless set); HIDDEN and EMBEDDINGS go out as float32.
        self.model = serve(
            backbone.load(self.serving.params.weights_dir("backbone")), self.serving.params, self.serving.device
        )
        self.vocab_size = self.model.config.vocab_size
        self.width = self.model.config.hidden_size
        tokenizer = backbone.SmokeByteTokenizer()
        self.stop_ids = sorted({tokenizer.eos_id, tokenizer.special_token_id(ENDOFTEXT)})
        self.max_new_tokens = self.serving.params.get_int("max_new_tokens_limit", 2048)
        self.prefill_rows = self.serving.params.get_int("max_prefill_rows_per_step", 256)

    def execute(self, requests: list[Any]) -> None:
        # A stopped generation leaves a consistent context: the session lives on.
        self.serving.schedule_all(requests, self._job, free_on_cancel=False)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _step(self, steps: list[backbone.BackboneStep]) -> list[backbone.StepOutput]:
        return self.model.run(steps)

    def _job(self, request: Any, flags: SequenceFlags) -> JobSteps:
        job = BackboneRequest.parse(
            input_getter(request),
            vocab_size=self.vocab_size,
            width=self.width,
            max_new_tokens_limit=self.max_new_tokens,
        )
        session = self.serving.streams.open_or_get(flags, functools.partial(self._new_session, flags, job.fork_from))
        if job.truncate_to >= 0:
            session.truncate(job.truncate_to)
        speech = [] if job.speech is None else [torch.from_numpy(job.speech)]
        segments = [s for s in (job.input_ids, *speech, job.suffix_ids) if len(s)]
        hidden = [torch.zeros(0, self.width)]
        if segments:
            for part in session.prepare_append(*segments).split(self.prefill_rows):
                hidden.append((yield Work(part)).hidden)
        yield _response(np.zeros(0, dtype=np.int32), torch.cat(hidden), torch.zeros(0, self.width), session.length)
        generation = backbone.Generation(
            session,
            job.max_new_tokens,
            temperature=job.sampling.temperature,
            top_k=job.sampling.top_k,
            top_p=job.sampling.top_p,
            seed=job.sampling.seed,
            stop_ids=self.stop_ids,
        )
        while not generation.done:
            token = generation.take((yield Work(generation.prepare())))
            if token is None:
                return
            ids = np.array([token.token_id], dtype=np.int32)
            yield _response(ids, token.hidden[None], token.embedding[None], session.length)

    def _new_session(self, flags: SequenceFlags, fork_from: int) -> backbone.BackboneSession:
        if not fork_from:
            return self.model.new_session()
        if fork_from == flags.stream_id:
            raise InvalidInputError("FORK_FROM must name another stream than the one being started")
        return self.serving.streams.get(fork_from).fork()


def _response(token_ids: np.ndarray, hidden: torch.Tensor, embeddings: torch.Tensor, length: int) -> Any:
    return response(BackboneOutput(token_ids, hidden.float().numpy(), embeddings.float().numpy(), length).tensors())
