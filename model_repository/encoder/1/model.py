"""Triton adapter for the streaming speech encoder (``services.encoder``).

Triton's sequence batcher hands ``execute()`` one chunk request from each of many streams; their
frontends run per stream and the network runs once for all of them (``services.encoder.encode_batch``).
"""

from __future__ import annotations

from typing import Any

import torch

from minmo_contracts.encoder import EncoderOutput, EncoderRequest
from services import encoder
from services.triton.batching import JobSteps, Work
from services.triton.contracts import response
from services.triton.precision import serve
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[encoder.EncoderStream] = ModelServing(args, decoupled=False, kernel=self._step)
        # The `dtype` parameter (float32 unless set): the GPU profile serves bf16.
        self.model = serve(
            encoder.load(self.serving.params.weights_dir("encoder")), self.serving.params, self.serving.device
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        return self.serving.respond_all(requests, self._job)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _step(self, work: list[encoder.EncoderWork]) -> list[torch.Tensor]:
        return encoder.encode_batch(self.model, work)

    def _job(self, request: Any, flags: SequenceFlags) -> JobSteps:
        parsed = EncoderRequest.parse(input_getter(request), end=flags.end)
        stream = self.serving.streams.open_or_get(flags, self.model.new_stream)
        offset = stream.frames_emitted
        embeddings = yield Work(stream.prepare(parsed.audio, final=flags.end))
        # samples_needed: what the client may wait for before its next request (fewer come back empty).
        yield response(EncoderOutput(embeddings.float().cpu().numpy(), offset, stream.samples_needed).tensors())
