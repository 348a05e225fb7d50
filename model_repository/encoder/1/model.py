"""Triton adapter for the streaming speech encoder (``services.encoder``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from services import encoder
from services.triton.contracts import EncoderRequest
from services.triton.metrics import ComputeMeter
from services.triton.params import ModelParameters
from services.triton.requests import input_getter, sequence_flags
from services.triton.responses import error_for, log_unexpected
from services.triton.stateful import StreamRegistry


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = ModelParameters.from_args(args)
        torch.set_num_threads(params.get_int("torch_threads", 1))
        self.model = encoder.load(params.weights_dir("encoder"))
        self.streams: StreamRegistry[encoder.EncoderStream] = StreamRegistry(params)
        self.meter = ComputeMeter(params.model_name)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            with self.meter.measure():
                responses.append(self._respond(request))
        return responses

    def finalize(self) -> None:
        self.streams.shutdown()

    def _respond(self, request: Any) -> Any:
        try:
            flags = sequence_flags(request)
            try:
                parsed = EncoderRequest.parse(input_getter(request), end=flags.end)
                stream = self.streams.open_or_get(flags, self.model.new_stream)
                offset = stream.frames_emitted
                with torch.inference_mode():
                    embeddings = stream.push(parsed.audio, final=flags.end)
            finally:
                if flags.end:
                    self.streams.close(flags.stream_id)
            return pb_utils.InferenceResponse(
                [
                    pb_utils.Tensor("EMBEDDINGS", embeddings.numpy().astype(np.float32)[None]),
                    pb_utils.Tensor("FRAME_OFFSET", np.array([[offset]], dtype=np.int64)),
                ]
            )
        except Exception as exc:
            log_unexpected("encoder", exc)
            return pb_utils.InferenceResponse(error=error_for(exc))
