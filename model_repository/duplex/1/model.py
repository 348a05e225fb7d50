"""Triton adapter for the full-duplex predictor (``services.duplex``).

Triton's sequence batcher hands ``execute()`` the frames of many streams; the predictor scores all
of them in one pass (``services.duplex.score_batch``), each stream against its own window.
"""

from __future__ import annotations

from typing import Any

import torch

from minmo_contracts.duplex import DuplexOutput, DuplexRequest
from services import duplex
from services.triton.batching import JobSteps, Work
from services.triton.contracts import response
from services.triton.precision import serve
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[duplex.DuplexStream] = ModelServing(args, decoupled=False, kernel=self._step)
        # The `dtype` parameter (float32 unless set); PROBS come back float32 in any dtype.
        self.model = serve(
            duplex.load(self.serving.params.weights_dir("duplex")), self.serving.params, self.serving.device
        )
        self.width = self.model.config.llm_dim

    def execute(self, requests: list[Any]) -> list[Any]:
        return self.serving.respond_all(requests, self._job)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _step(self, work: list[duplex.DuplexWork]) -> list[torch.Tensor]:
        return duplex.score_batch(self.model, work)

    def _job(self, request: Any, flags: SequenceFlags) -> JobSteps:
        parsed = DuplexRequest.parse(input_getter(request), width=self.width, end=flags.end)
        stream = self.serving.streams.open_or_get(flags, self.model.new_stream)
        probs = torch.zeros(0, 3)
        if parsed.hidden.shape[0]:
            work = stream.prepare(torch.from_numpy(parsed.hidden), torch.from_numpy(parsed.speaking))
            probs = yield Work(work)
        yield response(DuplexOutput(probs.float().cpu().numpy()).tensors())
