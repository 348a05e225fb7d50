"""Triton adapter for the speech-token LM (``services.speech_lm``): decoupled, one stream per turn.

Every request is a job on the model's step scheduler: one speech token per step, beside the tokens
of every other turn (``services.triton.scheduler``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from minmo_contracts.speech_lm import SpeechLMOutput, SpeechLMRequest
from services import speech_lm
from services.triton.batching import JobSteps, Work
from services.triton.contracts import response
from services.triton.precision import serve
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing
from services.triton.tensors import InvalidInputError


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[speech_lm.SpeechLMStream] = ModelServing(args, decoupled=True, kernel=self._step)
        # The `dtype` parameter (float32 unless set); QUERY/SEMANTIC are cast where they are projected.
        weights = self.serving.params.weights_dir("speech_lm")
        self.model = serve(speech_lm.load(weights), self.serving.params, self.serving.device)
        self.width = 2 * self.model.config.llm_hidden_size
        self.tokens_per_group = self.model.config.tokens_per_group
        self.max_tokens = self.serving.params.get_int("max_tokens_limit", 4096)

    def execute(self, requests: list[Any]) -> None:
        # A stopped turn is over: its stream is freed at once instead of waiting for the idle timeout.
        self.serving.schedule_all(requests, self._job, free_on_cancel=True)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _step(self, work: list[tuple[speech_lm.SpeechLMStream, torch.Tensor]]) -> list[torch.Tensor]:
        return self.model.run(work)

    def _job(self, request: Any, flags: SequenceFlags) -> JobSteps:
        job = SpeechLMRequest.parse(
            input_getter(request),
            width=self.width,
            default_tokens=self.tokens_per_group,
            max_tokens_limit=self.max_tokens,
        )
        if flags.start and job.query is None:
            raise InvalidInputError("the START request of a speech_lm stream must carry QUERY")
        stream = self.serving.streams.open_or_get(
            flags, lambda: self.model.new_stream(torch.from_numpy(job.query).to(self.serving.device))
        )
        if job.semantic is not None:
            with torch.inference_mode():
                stream.push_semantic(torch.from_numpy(job.semantic).to(self.serving.device))
        generation = speech_lm.SpeechGeneration(
            stream,
            job.max_tokens,
            until_eos=job.until_eos,
            temperature=job.sampling.temperature,
            top_k=job.sampling.top_k,
            seed=job.sampling.seed,
        )
        while (rows := generation.prepare()) is not None:
            token = generation.take((yield Work((stream, rows))))
            if token is None:
                break
            yield response(SpeechLMOutput(np.array([token], np.int32), end_of_speech=False).tensors())
        if job.until_eos and generation.emitted < job.max_tokens:
            yield response(SpeechLMOutput(np.zeros(0, np.int32), end_of_speech=True).tensors())
