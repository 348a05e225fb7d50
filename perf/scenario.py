"""What a listener measures of one answer, and the same spoken turn as a direct chain of Triton calls.

``TurnResult`` is shared by both paths (``perf.conversation`` for Converse): 100 ms chunks at
real-time pace, end of speech = the last spoken chunk played out, the arrival time and length of
every reply chunk; so time to first audio, chunk gaps, underruns and real-time factor are computed
the same way for both.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from orchestrator.converse.context import BackboneContext
from orchestrator.stages.listen import ListenPath
from orchestrator.stages.speak import AudioDelta, SpeakConfig, SpeakPath
from orchestrator.triton.client import TritonModels
from services.backbone import ChatPrompt, SmokeByteTokenizer
from services.duplex import Decision
from services.duplex.policy import DecisionPolicy

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


async def direct_turn(triton: str, clip: np.ndarray, speech_end: int) -> TurnResult:
    """The same turn as a direct chain of Triton calls (demo_chain's pieces), no orchestrator, no Redis."""
    models = TritonModels(triton)
    tokenizer = SmokeByteTokenizer()
    prompt = ChatPrompt(tokenizer)
    context = BackboneContext(models, prompt)
    await context.append(ids=prompt.user_speech_open())
    listen = ListenPath(models, lambda embeddings: context.append(speech=embeddings))
    gate = DecisionPolicy().new_gate()
    embeddings: list[np.ndarray] = []
    started = time.perf_counter()
    result = TurnResult(end_of_speech=started + speech_end / RATE)
    try:
        for offset in range(0, len(clip), CHUNK):
            # A chunk exists only once its 100 ms have been spoken: sent at the end of its interval, as a client does.
            await asyncio.sleep(max(0.0, started + (offset + CHUNK) / RATE - time.perf_counter()))
            step = await listen.push(clip[offset : offset + CHUNK], speaking=False, end=offset + CHUNK >= len(clip))
            embeddings.append(step.embeddings)
            voiced = offset + CHUNK > int(LEAD_S * RATE)
            if voiced and Decision.RESPOND_NOW in [gate.step(torch.tensor(p), speaking=False) for p in step.probs]:
                break
        await listen.close()
        speak = SpeakPath(
            models,
            context.stream_id,
            prompt_ids=prompt.user_speech_close() + prompt.assistant_open(),
            user_embedding=np.concatenate(embeddings).mean(axis=0),
            decode=tokenizer.decode,
            config=SpeakConfig(max_new_tokens=MAX_TOKENS),
        )
        async for event in speak.run():
            if isinstance(event, AudioDelta):
                result.arrivals.append(time.perf_counter())
                result.samples.append(event.samples.size)
        result.acknowledged = True
        await context.close()
    finally:
        await models.close()
    return result
