"""The listen path: every PCM chunk goes encoder -> backbone append -> duplex, in order.

It owns the encoder and duplex streams; where the embeddings are appended is the caller's choice
(``append_speech``): the session context while the assistant is silent, a fork of it while the
assistant speaks. Per chunk it returns the new embeddings, their hidden states and the duplex
probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.routed import ModelCalls

AppendSpeech = Callable[[np.ndarray], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class ListenStep:
    embeddings: np.ndarray  # [n, llm_dim]
    hidden: np.ndarray  # [n, llm_dim]
    probs: np.ndarray  # [n, 3]: keep listening, respond now, stop speaking
    stage_ms: dict[str, float] = field(default_factory=dict)


class ListenPath:
    def __init__(self, models: ModelCalls, append_speech: AppendSpeech) -> None:
        self._models = models
        self.append_speech = append_speech
        self.encoder_id = new_stream_id()
        self.duplex_id = new_stream_id()
        self._encoder_started = False
        self._duplex_started = False

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
            return ListenStep(embeddings, embeddings, np.zeros((0, 3), np.float32), timings)
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
        return ListenStep(embeddings, hidden, decided["PROBS"], timings)

    async def close(self) -> None:
        """Free the duplex window and the encoder stream on Triton."""
        if self._duplex_started:
            await self._models.infer(
                "duplex",
                {"HIDDEN": np.zeros((0, 1), np.float32), "SPEAKING": np.zeros(0, bool)},
                sequence_id=self.duplex_id,
                end=True,
            )
            self._duplex_started = False
        if self._encoder_started:
            await self._models.infer(
                "encoder", {"AUDIO": np.zeros(0, np.float32)}, sequence_id=self.encoder_id, end=True
            )
            self._encoder_started = False
