"""What a Converse session knows about the turn it listens to and the response it gives.

Plain data plus what follows from it alone: a spoken turn as history stores it, how much of a
response was played, a failed response abandoned, its stage latencies (for ``response_done`` and
the metrics) and its trace (one root span per assistant turn, started and ended here).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from orchestrator.observability.tracing import stage_span, tracer, wall_ns
from orchestrator.stages.speak import SpeakPath
from orchestrator.state.records import StoredTurn

OUTPUT_RATE = 24_000


@dataclass
class Turn:
    """The user turn being listened to."""

    embeddings: list[np.ndarray] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=lambda: {"encoder": 0.0, "backbone_prefill": 0.0, "duplex": 0.0})
    voiced: bool = False
    audio_ms: int = 0
    start_length: int = -1  # backbone context length before the turn was opened
    started_ns: int = field(default_factory=time.time_ns)

    @property
    def frames(self) -> int:
        return sum(len(rows) for rows in self.embeddings)

    def stored(self, sequence: int) -> StoredTurn:
        """The spoken user turn as history keeps it: no text, its speech embeddings (to rebuild the context)."""
        speech = np.concatenate(self.embeddings).astype(np.float32)
        return StoredTurn(
            sequence,
            "user",
            "",
            (),
            self.audio_ms,
            speech_embeddings=speech.tobytes(),
            embedding_dim=speech.shape[1],
        )

    def keep_rows(self, rows: int) -> None:
        """Drop the speech rows after the first ``rows`` (the silence after the turn's end point)."""
        if rows < self.frames:
            self.embeddings = [np.concatenate(self.embeddings)[:rows]]

    def add(self, embeddings: np.ndarray, stage_ms: dict[str, float]) -> None:
        if len(embeddings):
            self.embeddings.append(embeddings)
        for name, value in stage_ms.items():
            self.stage_ms[name] = self.stage_ms.get(name, 0.0) + value


@dataclass
class Response:
    id: int
    speak: SpeakPath
    fork_id: int
    start_length: int
    turn: Turn
    end_of_speech_at: float | None
    task: asyncio.Task[None] | None = None
    sent_samples: int = 0
    first_audio_at: float | None = None
    sequence: int = 0
    finished: bool = False
    listened: list[np.ndarray] = field(default_factory=list)  # user audio embeddings while speaking
    first_sent_at: float | None = None
    span: trace.Span = trace.INVALID_SPAN  # the turn's root span (no-op unless tracing is configured)

    @property
    def sent_ms(self) -> int:
        return self.sent_samples * 1000 // OUTPUT_RATE

    def abandon(self) -> None:
        """A failed response: stop its Triton streams and its task (unless it is the caller), close its trace."""
        self.finished = True
        self.speak.cancel()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.span.end()

    def played_ms(self, reported_ms: int = 0) -> int:
        """What the client played: its report (capped at what was sent), else real time since the first audio."""
        if reported_ms:
            return min(reported_ms, self.sent_ms)
        if self.first_audio_at is None:
            return self.sent_ms
        return min(self.sent_ms, int((time.perf_counter() - self.first_audio_at) * 1000))


def latencies(response: Response) -> dict[str, float]:
    timings = response.speak.timings
    first_audio = response.first_audio_at
    end_to_audio = (
        (first_audio - response.end_of_speech_at) * 1000
        if first_audio is not None and response.end_of_speech_at is not None
        else 0.0
    )
    return {
        "encoder_ms": response.turn.stage_ms.get("encoder", 0.0),
        "backbone_prefill_ms": response.turn.stage_ms.get("backbone_prefill", 0.0),
        "duplex_ms": response.turn.stage_ms.get("duplex", 0.0),
        "first_token_ms": timings.first_token_ms or 0.0,
        "first_speech_token_ms": timings.first_speech_token_ms or 0.0,
        "first_audio_ms": timings.first_audio_ms or 0.0,
        "end_of_speech_to_first_audio_ms": end_to_audio,
    }


def start_turn_trace(response: Response, session_id: str, decided_ns: int) -> None:
    """The turn's root span, a trace of its own (not a child of the long Converse call), and its ``listen`` span."""
    turn = response.turn
    response.span = tracer().start_span(
        "turn",
        context=otel_context.Context(),
        start_time=turn.started_ns,
        attributes={"minmo.session.id": session_id, "minmo.turn.sequence": response.id},
    )
    stage_span(
        response.span,
        "listen",
        turn.started_ns,
        decided_ns,
        audio_ms=turn.audio_ms,
        **{f"{name}_ms": value for name, value in turn.stage_ms.items()},
    )


def end_turn_trace(response: Response, *, interrupted: bool, played_ms: int, text_tokens: int) -> None:
    """The turn's stage spans, one after another from the response's start, then the root's end."""
    span = response.span
    if not span.is_recording():
        return
    timings = response.speak.timings
    started = mark = wall_ns(timings.started)
    stages = (
        ("backbone.first_token", timings.first_token_ms),
        ("speech_lm.first_tokens", timings.first_speech_token_ms),
        ("vocoder.first_chunk", timings.first_audio_ms),
    )
    for name, since_start_ms in stages:
        if since_start_ms is None:
            break
        end = started + int(since_start_ms * 1e6)
        stage_span(span, name, mark, end, since_response_start_ms=since_start_ms)
        mark = max(mark, end)
    if response.first_sent_at is not None:
        stage_span(span, "first_audio_sent", mark, wall_ns(response.first_sent_at))
    span.set_attributes(
        {
            "minmo.turn.text_tokens": text_tokens,
            "minmo.turn.audio_ms": played_ms,
            "minmo.turn.interrupted": interrupted,
        }
    )
    span.end()
