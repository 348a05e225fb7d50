"""One spoken turn as a direct chain of Triton calls: listen until the duplex predictor says respond, then speak.

The listen and speak paths a Converse session runs (``orchestrator.stages``), driven in the caller's
task without an orchestrator process or Redis: the PCM goes through the encoder, the backbone
context and the duplex predictor chunk by chunk until the decision policy says RESPOND_NOW (or the
audio ends), then the reply streams from the backbone through speech_lm and the vocoder.
``minmo demo`` (:mod:`orchestrator.demo_chain`) runs it once and logs it; ``perf.load`` runs many at
once beside Converse sessions (:mod:`perf.scenario`) to compare the orchestrated path with this one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from minmo_contracts.prompt import ChatPrompt
from minmo_contracts.tokenizer import SmokeByteTokenizer, Tokenizer
from minmo_contracts.turn_taking import Decision, DecisionPolicy
from minmo_contracts.vad import EnergyVad
from orchestrator.converse.context import BackboneContext
from orchestrator.stages.listen import ListenPath
from orchestrator.stages.speak import AudioDelta, SpeakConfig, SpeakPath, SpeakTimings, TextDelta
from orchestrator.triton.routed import ModelCalls

INPUT_RATE = 16_000


@dataclass(frozen=True)
class ChainConfig:
    chunk_samples: int  # PCM per listen push (16 kHz)
    # Send each chunk once its audio has been spoken (at the end of its interval, as a client does);
    # otherwise as fast as the models answer.
    realtime: bool = False
    # Decisions while the clip is still in its lead silence do not end the turn (the gate is not fed them).
    ignore_decisions_before_s: float = 0.0
    speak: SpeakConfig = field(default_factory=SpeakConfig)


@dataclass
class ChainTurn:
    started: float  # time.perf_counter() when the first chunk's interval began
    respond_at_s: float | None  # audio sent (seconds of the clip) when RESPOND_NOW came; None: at its end
    token_ids: list[int]
    timings: SpeakTimings


async def run_turn(
    models: ModelCalls,
    pcm: np.ndarray,
    config: ChainConfig,
    *,
    tokenizer: Tokenizer | None = None,
    on_audio: Callable[[AudioDelta], None] = lambda _: None,
) -> ChainTurn:
    """Listen to ``pcm`` (16 kHz float32) until the turn ends, then speak the reply; ``on_audio`` sees each chunk.

    The session context is ended on Triton once the reply is complete; the caller owns ``models``.
    """
    tokenizer = tokenizer or SmokeByteTokenizer()
    prompt = ChatPrompt(tokenizer)
    context = BackboneContext(models, prompt)
    # The same context the duplex predictor was trained on: a spoken user turn opening the session.
    await context.append(ids=prompt.user_speech_open())
    listen = ListenPath(models, lambda embeddings: context.append(speech=embeddings))
    gate = DecisionPolicy().new_gate()
    vad = EnergyVad()  # the session's VAD: its silence is the policy's floor
    chunk = config.chunk_samples
    user_embeddings: list[np.ndarray] = []
    respond_at_s: float | None = None
    started = time.perf_counter()
    for offset in range(0, len(pcm), chunk):
        if config.realtime:
            await asyncio.sleep(max(0.0, started + (offset + chunk) / INPUT_RATE - time.perf_counter()))
        piece = pcm[offset : offset + chunk]
        step = await listen.push(piece, speaking=False, end=offset + chunk >= len(pcm))
        user_embeddings.append(step.embeddings)
        vad.push(piece)
        if offset + chunk <= int(config.ignore_decisions_before_s * INPUT_RATE):
            continue
        if Decision.RESPOND_NOW in [gate.step(p, False, vad.silence_ms) for p in step.probs]:
            respond_at_s = (offset + len(piece)) / INPUT_RATE
            break
    await listen.close()

    speak = SpeakPath(
        models,
        context.stream_id,
        prompt_ids=prompt.user_speech_close() + prompt.assistant_open(),
        user_embedding=np.concatenate(user_embeddings).mean(axis=0),
        decode=tokenizer.decode,
        config=config.speak,
    )
    token_ids: list[int] = []
    async for event in speak.run():
        if isinstance(event, TextDelta):
            token_ids.append(event.token_id)
        elif isinstance(event, AudioDelta):
            on_audio(event)
    await context.close()
    return ChainTurn(started, respond_at_s, token_ids, speak.timings)
