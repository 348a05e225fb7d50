"""Triton adapter for the full-duplex predictor (``services.duplex``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from services import duplex
from services.triton.contracts import DuplexRequest
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[duplex.DuplexStream] = ModelServing(args, decoupled=False)
        self.model = duplex.load(self.serving.params.weights_dir("duplex")).to(self.serving.device)
        self.width = self.model.config.llm_dim

    def execute(self, requests: list[Any]) -> list[Any]:
        return self.serving.respond_all(requests, self._respond)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _respond(self, request: Any, flags: SequenceFlags) -> Any:
        parsed = DuplexRequest.parse(input_getter(request), width=self.width, end=flags.end)
        stream = self.serving.streams.open_or_get(flags, self.model.new_stream)
        probs = torch.zeros(0, 3)
        if parsed.hidden.shape[0]:
            with torch.inference_mode():
                probs = stream.push(torch.from_numpy(parsed.hidden), torch.from_numpy(parsed.speaking))
        return pb_utils.InferenceResponse([pb_utils.Tensor("PROBS", probs.cpu().numpy().astype(np.float32)[None])])
