"""Triton adapter for the speech-token LM (``services.speech_lm``): decoupled, one stream per turn."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from services import speech_lm
from services.triton.contracts import SpeechLMRequest
from services.triton.metrics import ComputeMeter
from services.triton.ordered_executor import OrderedExecutor
from services.triton.params import ModelParameters
from services.triton.requests import input_getter, sequence_flags
from services.triton.responses import stream_responses
from services.triton.stateful import StreamRegistry
from services.triton.tensors import InvalidInputError


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = ModelParameters.from_args(args)
        torch.set_num_threads(params.get_int("torch_threads", 1))
        self.model = speech_lm.load(params.weights_dir("speech_lm"))
        self.width = 2 * self.model.config.llm_hidden_size
        self.tokens_per_group = self.model.config.tokens_per_group
        self.max_tokens = params.get_int("max_tokens_limit", 4096)
        self.streams: StreamRegistry[speech_lm.SpeechLMStream] = StreamRegistry(params)
        self.meter = ComputeMeter(params.model_name)
        self.executor = OrderedExecutor(params.get_int("worker_threads", 2), "speech_lm")

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            self.executor.submit(request.correlation_id(), functools.partial(self._serve, request))
        return None

    def finalize(self) -> None:
        self.executor.shutdown()
        self.streams.shutdown()

    def _serve(self, request: Any) -> None:
        # A cancelled turn is over: its stream is freed at once instead of waiting for the idle timeout.
        stream_id = int(request.correlation_id())
        stream_responses(
            "speech_lm",
            request,
            functools.partial(self._responses, request),
            self.meter,
            on_cancel=lambda: self.streams.close(stream_id),
        )

    def _responses(self, request: Any, is_cancelled: Callable[[], bool]) -> Iterator[Any]:
        flags = sequence_flags(request)
        try:
            job = SpeechLMRequest.parse(
                input_getter(request),
                width=self.width,
                default_tokens=self.tokens_per_group,
                max_tokens_limit=self.max_tokens,
            )
            if flags.start and job.query is None:
                raise InvalidInputError("the START request of a speech_lm stream must carry QUERY")
            stream = self.streams.open_or_get(flags, lambda: self.model.new_stream(torch.from_numpy(job.query)))
            with torch.inference_mode():
                if job.semantic is not None:
                    stream.push_semantic(torch.from_numpy(job.semantic))
                produced = 0
                for token in stream.generate(
                    job.max_tokens,
                    until_eos=job.until_eos,
                    temperature=job.sampling.temperature,
                    top_k=job.sampling.top_k,
                    seed=job.sampling.seed,
                ):
                    produced += 1
                    yield _response([token], end_of_speech=False)
                    if is_cancelled():
                        return
            if job.until_eos and produced < job.max_tokens:
                yield _response([], end_of_speech=True)
        finally:
            if flags.end:
                self.streams.close(flags.stream_id)


def _response(tokens: list[int], *, end_of_speech: bool) -> Any:
    return pb_utils.InferenceResponse(
        [
            pb_utils.Tensor("SPEECH_TOKENS", np.array([tokens], dtype=np.int32)),
            pb_utils.Tensor("END_OF_SPEECH", np.array([[end_of_speech]], dtype=np.bool_)),
        ]
    )
