"""The listen path: PCM goes encoder -> backbone append -> duplex, in order, one encoder chunk at a time.

It owns the encoder and duplex streams (the encoder behind an :class:`EncoderFeed`, which sends
audio only when it completes a chunk: a push below that returns an empty step without a call);
where the embeddings are appended is the caller's choice (``append_speech``): the session context
while the assistant is silent, a fork of it while the assistant speaks. Per push it returns the new
embeddings, their hidden states and the duplex probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from minmo_contracts import duplex
from orchestrator.stages.encoder_feed import EncoderFeed
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
        self.encoder = EncoderFeed(models)
        self.duplex_id = new_stream_id()
        self._duplex_started = False

    @property
    def encoder_id(self) -> int:
        return self.encoder.sequence_id

    async def push(self, pcm: np.ndarray, *, speaking: bool, end: bool = False) -> ListenStep:
        """Encode one chunk of 16 kHz float32 PCM; ``end`` flushes and closes the encoder stream."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        requests = self.encoder.requests
        embeddings = await self.encoder.push(pcm, end=end)
        if self.encoder.requests > requests:
            timings["encoder"] = (time.perf_counter() - started) * 1000
        if embeddings.shape[0] == 0:
            return ListenStep(embeddings, embeddings, np.zeros((0, 3), np.float32), timings)
        started = time.perf_counter()
        hidden = await self.append_speech(embeddings)
        timings["backbone_prefill"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        decided = await self._models.infer(
            duplex.NAME,
            duplex.request(hidden, speaking=speaking),
            sequence_id=self.duplex_id,
            start=not self._duplex_started,
        )
        self._duplex_started = True
        timings["duplex"] = (time.perf_counter() - started) * 1000
        return ListenStep(embeddings, hidden, duplex.DuplexOutput.read(decided).probs, timings)

    async def close(self) -> None:
        """Free the duplex window and the encoder stream on Triton."""
        if self._duplex_started:
            await self._models.infer(duplex.NAME, duplex.end_request(), sequence_id=self.duplex_id, end=True)
            self._duplex_started = False
        await self.encoder.close()
