"""Triton adapter for the streaming speech encoder (``services.encoder``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from services import encoder
from services.triton.contracts import EncoderRequest
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[encoder.EncoderStream] = ModelServing(args, decoupled=False)
        self.model = encoder.load(self.serving.params.weights_dir("encoder")).to(self.serving.device)

    def execute(self, requests: list[Any]) -> list[Any]:
        return self.serving.respond_all(requests, self._respond)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _respond(self, request: Any, flags: SequenceFlags) -> Any:
        parsed = EncoderRequest.parse(input_getter(request), end=flags.end)
        stream = self.serving.streams.open_or_get(flags, self.model.new_stream)
        offset = stream.frames_emitted
        with torch.inference_mode():
            embeddings = stream.push(parsed.audio, final=flags.end)
        return pb_utils.InferenceResponse(
            [
                pb_utils.Tensor("EMBEDDINGS", embeddings.cpu().numpy().astype(np.float32)[None]),
                pb_utils.Tensor("FRAME_OFFSET", np.array([[offset]], dtype=np.int64)),
            ]
        )
