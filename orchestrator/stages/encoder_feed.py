"""The encoder's input gate: PCM goes to Triton only when the stream can emit embeddings.

The encoder emits embeddings per completed chunk (240 ms in the smoke profile, 600 ms in MinMo's);
a request carrying less audio comes back empty and still costs a round trip and a place in the
encoder's batch. Every encoder response says how many more samples its stream needs before the next
chunk (``SAMPLES_NEEDED``): the feed holds what arrives below that and sends it all the moment the
sample that completes a chunk arrives, which is exactly when the encoder would have emitted the chunk
anyway. So the listen path makes one request per chunk and no request adds latency. Until the first
response (and against an encoder that does not say) every push is sent.
"""

from __future__ import annotations

import numpy as np

from minmo_contracts import encoder
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.routed import ModelCalls


class EncoderFeed:
    """One encoder stream: ``push`` PCM as it arrives, get the embeddings it completed (often none)."""

    def __init__(self, models: ModelCalls, sequence_id: int | None = None) -> None:
        self._models = models
        self.sequence_id = sequence_id or new_stream_id()
        self.started = False
        self.requests = 0
        self._held: list[np.ndarray] = []
        self._held_samples = 0
        self._needed = 0
        self._width = 0

    @property
    def held_samples(self) -> int:
        """Samples received but not yet sent: fewer than the encoder needs for its next chunk."""
        return self._held_samples

    async def push(self, pcm: np.ndarray, *, end: bool = False) -> np.ndarray:
        """Feed 16 kHz float32 PCM; ``end`` sends what is held and closes the stream (its tail is flushed)."""
        if pcm.size:
            self._held.append(pcm.astype(np.float32, copy=False))
            self._held_samples += pcm.size
        if not end and (self._held_samples == 0 or self._held_samples < self._needed):
            return np.zeros((0, self._width), np.float32)
        audio = np.concatenate(self._held) if len(self._held) > 1 else self._held[0] if self._held else pcm[:0]
        self._held, self._held_samples = [], 0
        outputs = await self._models.infer(
            encoder.NAME,
            encoder.request(audio),
            sequence_id=self.sequence_id,
            start=not self.started,
            end=end,
        )
        self.requests += 1
        self.started = not end
        encoded = encoder.EncoderOutput.read(outputs)
        embeddings = encoded.embeddings
        self._width = embeddings.shape[1] if embeddings.ndim == 2 else self._width
        self._needed = encoded.samples_needed
        return embeddings

    async def close(self) -> None:
        """End the stream on Triton without encoding what is held (the caller is done with it)."""
        self._held, self._held_samples = [], 0
        if self.started:
            await self._models.infer(encoder.NAME, encoder.end_request(), sequence_id=self.sequence_id, end=True)
            self.started = False
