"""Delivering one response to the client: its text and audio deltas, audio paced to real-time playback.

The client plays what it receives; pacing keeps the server's idea of what was played (and of
whether the assistant is still speaking, which the duplex model needs for barge-in) within a lead
of playback, instead of the whole reply arriving in the first second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from minmo.v1 import minmo_pb2 as pb

from orchestrator.converse import events
from orchestrator.converse.turns import Response
from orchestrator.observability import metrics
from orchestrator.stages.speak import AudioDelta, TextDelta


async def deliver(
    response: Response,
    emit: Callable[[pb.ServerEvent], None],
    lead_ms: int,
    deltas: AsyncIterator[TextDelta | AudioDelta] | None = None,
) -> None:
    """Stream the response's deltas to ``emit``; return once its last audio has played at the client.

    ``deltas``: where they come from when not from the speak path directly (a committed speculation:
    what it held, then the rest). Triton failures propagate (``TritonStageError``): the session
    decides what they cost.
    """
    async for delta in deltas if deltas is not None else response.speak.run():
        if isinstance(delta, TextDelta):
            emit(events.text_delta(response.id, delta.text))
        elif isinstance(delta, AudioDelta):
            if response.first_audio_at is None:
                response.first_audio_at = time.perf_counter()
            elif (time.perf_counter() - response.first_audio_at) * 1000 > response.sent_ms:
                metrics.AUDIO_UNDERRUNS.inc()  # the client has played everything it was sent
            await pace(response, lead_ms)
            emit(events.audio_delta(response.id, response.sequence, delta.samples))
            if response.first_sent_at is None:
                response.first_sent_at = time.perf_counter()
            response.sequence += 1
            response.sent_samples += delta.samples.size
    if response.first_audio_at is not None:
        await pace(response, 0)  # the response lasts until its audio has played


async def pace(response: Response, lead_ms: int) -> None:
    """Wait until what was sent is at most ``lead_ms`` ahead of real-time playback."""
    assert response.first_audio_at is not None
    elapsed_ms = (time.perf_counter() - response.first_audio_at) * 1000
    ahead_ms = response.sent_ms - elapsed_ms
    if ahead_ms > lead_ms:
        await asyncio.sleep((ahead_ms - lead_ms) / 1000)
