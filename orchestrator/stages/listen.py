"""The listen path: every PCM chunk goes encoder -> backbone append -> duplex, in order.

It owns three Triton streams (encoder, the backbone session it appends to, duplex) and returns,
per chunk, the new embeddings, their backbone hidden states and the duplex probabilities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import ModelStream, TritonModels


@dataclass(frozen=True)
class ListenStep:
    embeddings: np.ndarray  # [n, llm_dim]
    hidden: np.ndarray  # [n, llm_dim]
    probs: np.ndarray  # [n, 3]: keep listening, respond now, stop speaking
    context_length: int
    stage_ms: dict[str, float] = field(default_factory=dict)


class ListenPath:
    def __init__(self, models: TritonModels, backbone_stream: ModelStream, backbone_id: int) -> None:
        self._models = models
        self._backbone = backbone_stream
        self.backbone_id = backbone_id
        self.encoder_id = new_stream_id()
        self.duplex_id = new_stream_id()
        self._encoder_started = False
        self._duplex_started = False
        self.context_length = 0

    async def push(self, pcm: np.ndarray, *, speaking: bool, end: bool = False) -> ListenStep:
        """Encode one chunk of 16 kHz float32 PCM; ``end`` flushes and closes the encoder stream."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        encoded = await self._models.infer(
            "encoder",
            {"AUDIO": pcm.astype(np.float32)},
            sequence_id=self.encoder_id,
            start=not self._encoder_started,
            end=end,
        )
        self._encoder_started = not end
        timings["encoder"] = (time.perf_counter() - started) * 1000
        embeddings = encoded["EMBEDDINGS"]
        if embeddings.shape[0] == 0:
            return ListenStep(embeddings, embeddings, np.zeros((0, 3), np.float32), self.context_length, timings)
        started = time.perf_counter()
        hidden = await self.append_speech(embeddings)
        timings["backbone_prefill"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        decided = await self._models.infer(
            "duplex",
            {"HIDDEN": hidden, "SPEAKING": np.array([speaking])},
            sequence_id=self.duplex_id,
            start=not self._duplex_started,
        )
        self._duplex_started = True
        timings["duplex"] = (time.perf_counter() - started) * 1000
        return ListenStep(embeddings, hidden, decided["PROBS"], self.context_length, timings)

    async def append_speech(self, embeddings: np.ndarray) -> np.ndarray:
        outputs = [
            out
            async for out in self._backbone.request(
                {"SPEECH_EMBEDDINGS": embeddings.astype(np.float32)}, sequence_id=self.backbone_id
            )
        ]
        self.context_length = int(outputs[-1]["CONTEXT_LENGTH"][0])
        return outputs[0]["HIDDEN"]

    async def close(self) -> None:
        """Free the duplex window and the encoder stream on Triton (the backbone session stays)."""
        empty_hidden = np.zeros((0, 1), np.float32)
        if self._duplex_started:
            await self._models.infer(
                "duplex", {"HIDDEN": empty_hidden, "SPEAKING": np.zeros(0, bool)}, sequence_id=self.duplex_id, end=True
            )
            self._duplex_started = False
        if self._encoder_started:
            await self._models.infer(
                "encoder", {"AUDIO": np.zeros(0, np.float32)}, sequence_id=self.encoder_id, end=True
            )
            self._encoder_started = False
