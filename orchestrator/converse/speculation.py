"""Answering sooner: a response started on a likely end of turn, held back until the real decision.

The duplex predictor decides *respond now* after ~600 ms of silence; the speak path then needs a few
hundred milliseconds more to its first audio. The turn's **end point** is the first frame at which the
user has been silent for ``silence_ms`` (the VAD hears no voice), or the predictor's respond-now
probability exceeds ``start``, whichever comes first. With speculation on, the session forks its
backbone context at the end point, closes the user turn on the fork and starts the speak path there
while the listen path goes on. Nothing reaches the client: the response's deltas are *held*. The real
decision *commits* it: the held deltas go out at once and the response streams on. If the user
speaks again first (the VAD hears a voice), the end point is cleared and the speculation *discarded*:
its streams STOPped, its fork ended, nothing stored, nothing sent. A speculation the decision does not
reach within ``max_hold_seconds`` is discarded too (the end point stays).

The stored history is the same with speculation on or off because the end point is a rule of the
session, not of speculation: the user turn is always closed at its end point (the silence after it
is dropped from the context), so the context, the query vector and the seed a response starts from,
and with them the response, do not depend on whether it was started early.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from orchestrator.observability import metrics
from orchestrator.stages.speak import AudioDelta, SpeakPath, TextDelta
from orchestrator.triton.errors import TritonStageError

OUTPUT_RATE = 24_000
_END: Final = object()


@dataclass(frozen=True)
class SpeculationSettings:
    """When a turn's end point is set (see the module doc) and whether a response starts there."""

    enabled: bool = True
    silence_ms: int = 240  # silence after the user's last speech (EnergyVad.silence_ms) that sets the end point
    start: float = 0.2  # or a respond-now probability above this
    max_hold_seconds: float = 3.0  # a speculation the decision does not reach within this is discarded

    def __post_init__(self) -> None:
        if not 0.0 < self.start < 1.0:
            raise ValueError(f"speculation start must be in (0, 1), got {self.start}")
        if self.silence_ms < 0:
            raise ValueError(f"speculation silence_ms must be >= 0, got {self.silence_ms}")
        if self.max_hold_seconds <= 0:
            raise ValueError(f"max_hold_seconds must be > 0, got {self.max_hold_seconds}")


class EndPoint:
    """Where the current user turn ends, in speech rows of the turn; None while the user may go on.

    Set at the first frame after the user's last voice at which the silence reached ``silence_ms`` or
    the respond-now probability exceeds ``start``; cleared when the VAD hears a voice. The session
    applies it with speculation on and off.
    """

    def __init__(self, settings: SpeculationSettings) -> None:
        self._settings = settings
        self.rows: int | None = None

    def frame(self, respond: float, rows: int, *, voiced: bool, silence_ms: int) -> bool | None:
        """One frame (``rows``: the turn's speech rows up to it). True: a point was set; False: cleared."""
        if voiced:
            return self.clear()
        if self.rows is None and (silence_ms >= self._settings.silence_ms or respond > self._settings.start):
            self.rows = rows
            return True
        return None

    def clear(self) -> bool | None:
        """The user goes on: no end point. False if one was set (a speculation on it must go)."""
        was_set = self.rows is not None
        self.rows = None
        return False if was_set else None

    def reset(self) -> None:
        """A new turn."""
        self.rows = None


@dataclass
class HeldResponse:
    """A speak path started at an end point on a fork of the context, its deltas held for the decision."""

    speak: SpeakPath
    fork_id: int
    end_rows: int  # the user turn's speech rows it was started after
    base_length: int  # the fork's context length before the assistant's opening
    response_id: int  # the sequence the response will be stored under if committed
    query: np.ndarray
    started_at: float = field(default_factory=time.perf_counter)
    started_ns: int = field(default_factory=time.time_ns)
    held_audio_samples: int = 0
    held_text: int = 0
    _queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    failed: TritonStageError | None = None

    def start(self, group: asyncio.TaskGroup) -> None:
        self._task = group.create_task(self._pump())
        metrics.SPECULATION.labels(outcome="started").inc()

    @property
    def age_seconds(self) -> float:
        return time.perf_counter() - self.started_at

    @property
    def held_audio_ms(self) -> int:
        return self.held_audio_samples * 1000 // OUTPUT_RATE

    async def _pump(self) -> None:
        """Pull the speak path's deltas; before the decision, stop pulling once audio is held."""
        try:
            async for delta in self.speak.run():
                if not self._released.is_set():
                    if isinstance(delta, AudioDelta):
                        self.held_audio_samples += delta.samples.size
                    elif isinstance(delta, TextDelta):
                        self.held_text += 1
                await self._queue.put(delta)
                if isinstance(delta, AudioDelta) and not self._released.is_set():
                    await self._released.wait()  # paused: the speak path's bounded queues hold it back
        except TritonStageError as exc:
            self.failed = exc
            await self._queue.put(exc)
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_END)

    def commit(self) -> AsyncIterator[TextDelta | AudioDelta]:
        """The decision came: the held deltas, then the rest as the speak path makes them."""
        self._released.set()
        metrics.SPECULATION.labels(outcome="committed").inc()
        metrics.SPECULATION_HELD_AUDIO.observe(self.held_audio_ms / 1000)
        metrics.SPECULATION_LEAD.observe(self.age_seconds)
        return self._drain()

    async def _drain(self) -> AsyncIterator[TextDelta | AudioDelta]:
        while (item := await self._queue.get()) is not _END:
            if isinstance(item, TritonStageError):
                raise item
            assert isinstance(item, TextDelta | AudioDelta)
            yield item

    async def discard(self) -> None:
        """STOP every stream of the speculation and wait for its task; the caller closes the fork."""
        metrics.SPECULATION.labels(outcome="discarded").inc()
        timings = self.speak.timings
        metrics.SPECULATION_DISCARDED_WORK.labels(kind="text_tokens").inc(timings.text_tokens)
        metrics.SPECULATION_DISCARDED_WORK.labels(kind="speech_tokens").inc(timings.speech_tokens)
        metrics.SPECULATION_DISCARDED_WORK.labels(kind="audio_seconds").inc(timings.samples / OUTPUT_RATE)
        self.speak.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TritonStageError):
                await self._task
        with contextlib.suppress(TritonStageError):
            await self.speak.release()
