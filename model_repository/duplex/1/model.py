"""Triton adapter for the full-duplex predictor (``services.duplex``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from services import duplex
from services.triton.contracts import DuplexRequest
from services.triton.metrics import ComputeMeter
from services.triton.params import ModelParameters
from services.triton.requests import input_getter, sequence_flags
from services.triton.responses import error_for, log_unexpected
from services.triton.stateful import StreamRegistry


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = ModelParameters.from_args(args)
        torch.set_num_threads(params.get_int("torch_threads", 1))
        self.model = duplex.load(params.weights_dir("duplex"))
        self.width = self.model.config.llm_dim
        self.streams: StreamRegistry[duplex.DuplexStream] = StreamRegistry(params)
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
                parsed = DuplexRequest.parse(input_getter(request), width=self.width, end=flags.end)
                stream = self.streams.open_or_get(flags, self.model.new_stream)
                probs = torch.zeros(0, 3)
                if parsed.hidden.shape[0]:
                    with torch.inference_mode():
                        probs = stream.push(torch.from_numpy(parsed.hidden), torch.from_numpy(parsed.speaking))
            finally:
                if flags.end:
                    self.streams.close(flags.stream_id)
            return pb_utils.InferenceResponse([pb_utils.Tensor("PROBS", probs.numpy().astype(np.float32)[None])])
        except Exception as exc:
            log_unexpected("duplex", exc)
            return pb_utils.InferenceResponse(error=error_for(exc))
