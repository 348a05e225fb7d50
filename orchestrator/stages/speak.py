"""The speak path: backbone generation -> speech_lm -> vocoder as three concurrent stages.

Stages are joined by bounded queues, so the first audio chunk is synthesised while the backbone is
still writing the rest of the text. MinMo's voice decoder consumes groups of 5 text tokens (each as
its input embedding ++ last-layer hidden state) and emits 15 speech tokens per group; the vocoder
turns every 15 speech tokens (600 ms) into audio. ``cancel()`` sends a STOP on every in-flight
Triton stream of the turn (never a cancelled RPC): the models stop it within one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from minmo_contracts import backbone, speech_lm, vocoder
from orchestrator.stages.grouping import SpeechGrouping
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import ModelStream
from orchestrator.triton.errors import TritonStageError
from orchestrator.triton.routed import ModelCalls
from orchestrator.triton.sequences import end_sequence


@dataclass(frozen=True)
class TextDelta:
    token_id: int
    text: str


@dataclass(frozen=True)
class AudioDelta:
    samples: np.ndarray  # float32, 24 kHz
    offset: int  # index of the first sample within the turn


@dataclass(frozen=True)
class SpeakConfig(SpeechGrouping):
    max_new_tokens: int = 64
    first_chunk_tokens: int = 15  # speech tokens of the first vocoder request; later ones take a group each
    queue_size: int = 8
    temperature: float = 0.0
    seed: int = 0


@dataclass
class SpeakTimings:
    """Milliseconds from the start of the turn to each stage's first output."""

    first_token_ms: float | None = None
    first_speech_token_ms: float | None = None
    first_audio_ms: float | None = None
    text_tokens: int = 0
    speech_tokens: int = 0
    samples: int = 0
    started: float = field(default_factory=time.perf_counter)

    def since_start(self) -> float:
        return (time.perf_counter() - self.started) * 1000


@dataclass(frozen=True)
class _Group:
    vectors: np.ndarray  # [n, 2 * llm_hidden]
    last: bool


_DONE = object()


def triton_failure(group: BaseExceptionGroup) -> TritonStageError | None:
    """The first Triton failure of a group made only of Triton failures (nested groups included)."""
    matched, rest = group.split(TritonStageError)
    if matched is None or rest is not None:
        return None
    first: BaseException = matched
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, TritonStageError)
    return first


class SpeakPath:
    def __init__(
        self,
        models: ModelCalls,
        backbone_id: int,
        *,
        prompt_ids: list[int],
        user_embedding: np.ndarray,
        decode: Callable[[list[int]], str],
        config: SpeakConfig | None = None,
    ) -> None:
        self._models = models
        self._backbone_id = backbone_id
        self._prompt_ids = prompt_ids
        self._user_embedding = user_embedding.astype(np.float32)
        self._decode = decode
        self.config = config or SpeakConfig()
        self.timings = SpeakTimings()
        self.token_ids: list[int] = []
        self._streams: dict[str, ModelStream] = {}  # by model, one per stage
        self._open_sequences: dict[str, int] = {}  # per-turn Triton sequences started, their END not yet sent
        self._events: asyncio.Queue[TextDelta | AudioDelta | object] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None

    async def run(self) -> AsyncIterator[TextDelta | AudioDelta]:
        """Yield text and audio deltas as they become available until the turn is complete."""
        self.timings = SpeakTimings()
        self._supervisor = asyncio.create_task(self._pipeline())
        while True:
            event = await self._events.get()
            if event is _DONE:
                break
            assert isinstance(event, TextDelta | AudioDelta)
            yield event
        await self._supervisor  # re-raises a stage's failure

    def cancel(self) -> None:
        for stream in self._streams.values():
            stream.cancel()
        if self._supervisor is not None:
            self._supervisor.cancel()

    async def release(self) -> None:
        """After ``cancel``: end the turn's speech_lm and vocoder streams so Triton frees their state now.

        A STOP ends only a request in flight; a stream between two requests (the vocoder, most of the
        time) would otherwise keep its state until the idle timeout. A sequence whose END was already
        sent (the speech LM's last group) needs nothing, and nothing waits for it.
        """
        empty = {speech_lm.NAME: speech_lm.end_request(), vocoder.NAME: vocoder.end_request()}
        for model, sequence_id in list(self._open_sequences.items()):
            with contextlib.suppress(TritonStageError):  # already freed by the stop itself
                await end_sequence(self._models, self._streams[model], sequence_id, empty[model])
            self._open_sequences.pop(model, None)

    async def end_backbone_sequence(self) -> None:
        """After ``cancel``: END the sequence the text stage generated on (a discarded speculation's fork).

        A response generates on the session's own context, which lives on; a speculation generates on a
        fork of it, which nothing else will ever end.
        """
        stream = self._streams.get(backbone.NAME)
        opened = stream is None
        if stream is None:  # cancelled before the text stage opened its stream: the fork still exists
            stream = self._models.open_stream(backbone.NAME)
        try:
            await end_sequence(self._models, stream, self._backbone_id, backbone.end_request())
        finally:
            if opened:
                await stream.close()

    async def _pipeline(self) -> None:
        groups: asyncio.Queue[_Group | np.ndarray] = asyncio.Queue(self.config.queue_size)
        tokens: asyncio.Queue[int | None] = asyncio.Queue(self.config.queue_size * self.config.tokens_per_group)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._text_stage(groups))
                group.create_task(self._speech_token_stage(groups, tokens))
                group.create_task(self._audio_stage(tokens))
        except BaseExceptionGroup as failed:
            # The caller handles a Triton failure of the turn (the session goes on); the TaskGroup's
            # wrapping would hide it. Anything else stays wrapped: it is a fault of ours.
            failure = triton_failure(failed)
            if failure is None:
                raise
            raise failure from failed
        finally:
            for stream in self._streams.values():
                await stream.close()
            await self._events.put(_DONE)

    def _open(self, model: str) -> ModelStream:
        stream = self._models.open_stream(model)
        self._streams[model] = stream
        return stream

    async def _text_stage(self, groups: asyncio.Queue[_Group | np.ndarray]) -> None:
        stream = self._open(backbone.NAME)
        pending: list[np.ndarray] = []
        request = backbone.generate_request(
            self._prompt_ids,
            max_new_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,
            seed=self.config.seed,
        )
        async for outputs in stream.request(request, sequence_id=self._backbone_id):
            out = backbone.BackboneOutput.read(outputs)
            if out.token_id is None:
                continue  # the prefill response of the assistant prompt
            token_id = out.token_id
            hidden, embedding = out.hidden[0], out.embeddings[0]
            if not self.token_ids:
                self.timings.first_token_ms = self.timings.since_start()
                await groups.put(np.concatenate([self._user_embedding, hidden]).astype(np.float32))
            self.token_ids.append(token_id)
            self.timings.text_tokens += 1
            await self._events.put(TextDelta(token_id, self._decode([token_id])))
            pending.append(np.concatenate([embedding, hidden]))
            if len(pending) == self.config.text_per_group:
                await groups.put(_Group(np.stack(pending).astype(np.float32), last=False))
                pending = []
        width = 2 * self._user_embedding.shape[0]
        tail = np.stack(pending).astype(np.float32) if pending else np.zeros((0, width), np.float32)
        await groups.put(_Group(tail, last=True))

    async def _speech_token_stage(self, groups: asyncio.Queue[_Group | np.ndarray], tokens: asyncio.Queue) -> None:
        stream = self._open(speech_lm.NAME)
        stream_id = new_stream_id()
        query: np.ndarray | None = None
        started = False
        while True:
            item = await groups.get()
            if isinstance(item, np.ndarray):
                query = item
                continue
            if not started and query is None:  # no text at all: nothing to say
                break
            request = speech_lm.request(
                item.vectors,
                query=None if started else query,
                max_tokens=self.config.max_tail_tokens if item.last else self.config.tokens_per_group,
                until_eos=item.last,
            )
            if item.last:
                self._open_sequences.pop(speech_lm.NAME, None)  # its END goes with this request
            else:
                self._open_sequences[speech_lm.NAME] = stream_id
            async for out in stream.request(request, sequence_id=stream_id, start=not started, end=item.last):
                for token in speech_lm.SpeechLMOutput.read(out).speech_tokens.tolist():
                    if self.timings.first_speech_token_ms is None:
                        self.timings.first_speech_token_ms = self.timings.since_start()
                    self.timings.speech_tokens += 1
                    await tokens.put(int(token))
            started = True
            if item.last:
                break
        await tokens.put(None)

    async def _audio_stage(self, tokens: asyncio.Queue[int | None]) -> None:
        stream = self._open(vocoder.NAME)
        stream_id = new_stream_id()
        buffer: list[int] = []
        started = False
        while True:
            token = await tokens.get()
            if token is not None:
                buffer.append(token)
            threshold = self.config.tokens_per_group if started else self.config.first_chunk_tokens
            if token is not None and len(buffer) < threshold:
                continue
            end = token is None
            if buffer or (end and started):
                if end:
                    self._open_sequences.pop(vocoder.NAME, None)  # its END goes with this request
                else:
                    self._open_sequences[vocoder.NAME] = stream_id
                async for out in stream.request(
                    vocoder.request(buffer), sequence_id=stream_id, start=not started, end=end
                ):
                    await self._emit_audio(vocoder.VocoderOutput.read(out))
                started = True
                buffer = []
            if end:
                return

    async def _emit_audio(self, out: vocoder.VocoderOutput) -> None:
        samples = out.audio
        if samples.size == 0:
            return
        if self.timings.first_audio_ms is None:
            self.timings.first_audio_ms = self.timings.since_start()
        self.timings.samples += samples.size
        await self._events.put(AudioDelta(samples, out.sample_offset))
