"""Triton adapter for token2wav (``services.vocoder``): decoupled, one stream per turn."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from services import vocoder
from services.triton.contracts import VocoderRequest
from services.triton.metrics import ComputeMeter
from services.triton.ordered_executor import OrderedExecutor
from services.triton.params import ModelParameters
from services.triton.requests import input_getter, sequence_flags
from services.triton.responses import stream_responses
from services.triton.stateful import StreamRegistry


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = ModelParameters.from_args(args)
        torch.set_num_threads(params.get_int("torch_threads", 1))
        self.model = vocoder.load(params.weights_dir("vocoder"))
        self.token_count = self.model.config.speech_token_size
        self.speaker_dim = self.model.config.speaker_dim
        self.streams: StreamRegistry[vocoder.VocoderStream] = StreamRegistry(params)
        self.meter = ComputeMeter(params.model_name)
        self.executor = OrderedExecutor(params.get_int("worker_threads", 2), "vocoder")

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            self.executor.submit(request.correlation_id(), functools.partial(self._serve, request))
        return None

    def finalize(self) -> None:
        self.executor.shutdown()
        self.streams.shutdown()

    def _serve(self, request: Any) -> None:
        stream_id = int(request.correlation_id())
        stream_responses(
            "vocoder",
            request,
            functools.partial(self._responses, request),
            self.meter,
            on_cancel=lambda: self.streams.close(stream_id),
        )

    def _responses(self, request: Any, is_cancelled: Callable[[], bool]) -> Iterator[Any]:
        flags = sequence_flags(request)
        try:
            job = VocoderRequest.parse(
                input_getter(request), token_count=self.token_count, speaker_dim=self.speaker_dim, end=flags.end
            )
            speaker = None if job.speaker is None else torch.from_numpy(job.speaker)
            stream = self.streams.open_or_get(flags, lambda: self.model.new_stream(speaker))
            offset = stream.samples_emitted
            with torch.inference_mode():
                audio = stream.push(torch.from_numpy(job.tokens), final=flags.end)
            yield pb_utils.InferenceResponse(
                [
                    pb_utils.Tensor("AUDIO", np.asarray(audio, dtype=np.float32)[None]),
                    pb_utils.Tensor("SAMPLE_OFFSET", np.array([[offset]], dtype=np.int64)),
                ]
            )
        finally:
            if flags.end:
                self.streams.close(flags.stream_id)
