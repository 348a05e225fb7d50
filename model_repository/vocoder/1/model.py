"""Triton adapter for token2wav (``services.vocoder``): decoupled, one stream per turn.

Every request is a job on the model's step scheduler: the pushes of all turns that have tokens
waiting run as one batched flow-matching + HiFT pass (``services.triton.scheduler``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from minmo_contracts.vocoder import VocoderOutput, VocoderRequest
from services import vocoder
from services.triton.batching import JobSteps, Work
from services.triton.contracts import response
from services.triton.precision import serve
from services.triton.requests import SequenceFlags, input_getter
from services.triton.serving import ModelServing


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.serving: ModelServing[vocoder.VocoderStream] = ModelServing(args, decoupled=True, kernel=self._step)
        # The `dtype` parameter (float32 unless set): the flow runs in it, HiFT stays float32 (AUDIO is float32).
        self.model = serve(
            vocoder.load(self.serving.params.weights_dir("vocoder")), self.serving.params, self.serving.device
        )
        self.token_count = self.model.config.speech_token_size
        self.speaker_dim = self.model.config.speaker_dim

    def execute(self, requests: list[Any]) -> None:
        self.serving.schedule_all(requests, self._job, free_on_cancel=True)

    def finalize(self) -> None:
        self.serving.shutdown()

    def _step(self, work: list[vocoder.VocoderWork]) -> list[np.ndarray]:
        return vocoder.push_batch(self.model, work)

    def _job(self, request: Any, flags: SequenceFlags) -> JobSteps:
        job = VocoderRequest.parse(
            input_getter(request), token_count=self.token_count, speaker_dim=self.speaker_dim, end=flags.end
        )
        speaker = None if job.speaker is None else torch.from_numpy(job.speaker).to(self.serving.device)
        stream = self.serving.streams.open_or_get(flags, lambda: self.model.new_stream(speaker))
        offset = stream.samples_emitted
        audio = yield Work(stream.prepare(torch.from_numpy(job.tokens), final=flags.end))
        yield response(VocoderOutput(np.asarray(audio, dtype=np.float32), offset).tensors())
