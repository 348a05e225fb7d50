"""What a listener measures of one answer, and the same spoken turn as a direct chain of Triton calls.

``TurnResult`` is shared by both paths (``perf.conversation`` for Converse, :func:`direct_turn` for
the direct chain of :mod:`orchestrator.direct_chain`): 100 ms chunks at real-time pace, end of
speech = the last spoken chunk played out, the arrival time and length of every reply chunk; so time
to first audio, chunk gaps, underruns and real-time factor are computed the same way for both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from orchestrator.direct_chain import ChainConfig, run_turn
from orchestrator.stages.speak import AudioDelta, SpeakConfig
from orchestrator.triton.client import TritonModels

RATE = 16_000
OUTPUT_RATE = 24_000
CHUNK = RATE // 10  # 100 ms
MAX_TOKENS = 40  # 8 groups of 5 text tokens: 4.8 s of reply audio
LEAD_S = 0.4  # silence before the question: the direct chain ignores decisions made in it
STAGES = ("encoder_ms", "backbone_prefill_ms", "duplex_ms", "first_token_ms", "first_speech_token_ms", "first_audio_ms")


@dataclass
class TurnResult:
    """What one client saw of one turn (times in seconds from ``time.perf_counter``)."""

    end_of_speech: float
    arrivals: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)  # 24 kHz samples per audio chunk
    stages: dict[str, float] = field(default_factory=dict)  # response_done.latencies (orchestrated only)
    acknowledged: bool = False

    @property
    def ttfa_ms(self) -> float | None:
        return (self.arrivals[0] - self.end_of_speech) * 1000 if self.arrivals else None

    @property
    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]

    @property
    def audio_s(self) -> float:
        return sum(self.samples) / OUTPUT_RATE

    @property
    def underruns(self) -> int:
        """Chunks that arrived after the audio before them had played out (playback from the first chunk)."""
        if not self.arrivals:
            return 0
        played = 0.0
        count = 0
        for arrival, samples in zip(self.arrivals, self.samples, strict=True):
            if arrival - self.arrivals[0] > played + 1e-3:
                count += 1
            played += samples / OUTPUT_RATE
        return count

    @property
    def rtf(self) -> float | None:
        """Wall time to stream the reply after its first chunk over the audio it carried after that chunk."""
        rest = sum(self.samples[1:]) / OUTPUT_RATE
        return (self.arrivals[-1] - self.arrivals[0]) / rest if rest > 0 else None


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


# The direct chain as a client drives it: a chunk exists only once its 100 ms have been spoken (sent at
# the end of its interval), and decisions in the lead silence do not count.
DIRECT = ChainConfig(
    chunk_samples=CHUNK, realtime=True, ignore_decisions_before_s=LEAD_S, speak=SpeakConfig(max_new_tokens=MAX_TOKENS)
)


async def direct_turn(triton: str, clip: np.ndarray, speech_end: int) -> TurnResult:
    """The same turn as a direct chain of Triton calls (``orchestrator.direct_chain``), no orchestrator, no Redis."""
    arrivals: list[float] = []
    samples: list[int] = []

    def arrived(delta: AudioDelta) -> None:
        arrivals.append(time.perf_counter())
        samples.append(delta.samples.size)

    models = TritonModels(triton)
    try:
        turn = await run_turn(models, clip, DIRECT, on_audio=arrived)
    finally:
        await models.close()
    return TurnResult(
        end_of_speech=turn.started + speech_end / RATE, arrivals=arrivals, samples=samples, acknowledged=True
    )
