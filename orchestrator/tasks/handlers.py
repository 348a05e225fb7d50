"""The gRPC side of Transcribe and Synthesize: protobuf in, the task objects, protobuf out.

With routing (``--triton-pool``) each call gets its own task objects on the pods pinned for that call
(``SessionRouting.task_models``), released when the call ends; without, one shared object per task.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import numpy as np
from minmo.v1 import minmo_pb2 as pb

from minmo_contracts.tokenizer import Tokenizer
from orchestrator.audio import AudioFormatError, InputAudioDecoder, encode_pcm16_24k
from orchestrator.errors import InvalidArgument
from orchestrator.routing.sessions import SessionRouting
from orchestrator.tasks.prompts import TaskInputError
from orchestrator.tasks.synthesize import Synthesizer
from orchestrator.tasks.transcribe import Transcriber

_TASKS = {
    pb.TRANSCRIBE_TASK_UNSPECIFIED: "ASR",
    pb.ASR: "ASR",
    pb.TRANSLATE: "TRANSLATE",
    pb.EMOTION: "EMOTION",
}


class TranscribeService:
    def __init__(self, transcriber: Transcriber | RoutedTranscriber) -> None:
        self.transcriber = transcriber

    async def transcribe(
        self, requests: AsyncIterator[pb.TranscribeRequest], context: Any
    ) -> AsyncIterator[pb.TranscribeResponse]:
        first = await anext(requests, None)
        if first is None or first.WhichOneof("request") != "config":
            raise InvalidArgument("the first Transcribe message must be `config` (task, language, audio format)")
        config = first.config
        if config.task not in _TASKS:
            raise InvalidArgument(f"task {config.task} is unknown: use ASR, TRANSLATE or EMOTION")
        fmt = config.audio_format
        try:
            decoder = InputAudioDecoder(fmt.encoding, fmt.sample_rate_hz)
        except (AudioFormatError, TaskInputError) as exc:
            raise InvalidArgument(str(exc)) from exc

        async def audio() -> AsyncIterator[np.ndarray]:
            async for request in requests:
                if request.WhichOneof("request") != "audio":
                    raise InvalidArgument("after `config`, Transcribe takes only `audio` messages")
                yield decoder.decode(request.audio.data)
            yield decoder.flush()

        try:
            async for delta in self.transcriber.transcribe(audio(), _TASKS[config.task], config.target_language):
                yield pb.TranscribeResponse(text_delta=delta)
        except (AudioFormatError, TaskInputError) as exc:
            raise InvalidArgument(str(exc)) from exc
        yield pb.TranscribeResponse(final=True)


class SynthesizeService:
    def __init__(self, synthesizer: Synthesizer | RoutedSynthesizer) -> None:
        self.synthesizer = synthesizer

    def max_audio_seconds(self, request: pb.SynthesizeRequest) -> float:
        """The most audio this request can produce (the tenant's audio quota reserves it before the call)."""
        try:
            return self.synthesizer.max_audio_seconds(request.text, request.instruction)
        except TaskInputError as exc:
            raise InvalidArgument(str(exc)) from exc

    async def synthesize(self, request: pb.SynthesizeRequest, context: Any) -> AsyncIterator[pb.SynthesizeResponse]:
        sequence = 0
        try:
            chunks = self.synthesizer.synthesize(request.text, request.instruction, request.voice_prompt or None)
            async for chunk in chunks:
                yield pb.SynthesizeResponse(audio=encode_pcm16_24k(chunk), sequence=sequence)
                sequence += 1
        except (AudioFormatError, TaskInputError) as exc:
            raise InvalidArgument(str(exc)) from exc


class RoutedTranscriber:
    """``Transcriber.transcribe`` on the least-loaded pods, pinned for the call."""

    def __init__(self, routing: SessionRouting, tokenizer: Tokenizer | None) -> None:
        self._routing = routing
        self._tokenizer = tokenizer

    async def transcribe(
        self, audio: AsyncIterator[np.ndarray], task: str, target_language: str = ""
    ) -> AsyncGenerator[str, None]:
        async with self._routing.task_models() as models:
            deltas = Transcriber(models, self._tokenizer).transcribe(audio, task, target_language)
            async with contextlib.aclosing(deltas):  # ends the Triton streams before the pin goes
                async for delta in deltas:
                    yield delta


class RoutedSynthesizer:
    """``Synthesizer.synthesize`` on the least-loaded pods, pinned for the call."""

    def __init__(self, routing: SessionRouting, tokenizer: Tokenizer | None) -> None:
        self._routing = routing
        self._tokenizer = tokenizer

    def max_audio_seconds(self, text: str, instruction: str) -> float:
        return Synthesizer(_NO_MODELS, self._tokenizer).max_audio_seconds(text, instruction)

    async def synthesize(
        self, text: str, instruction: str, voice_prompt: bytes | None
    ) -> AsyncGenerator[np.ndarray, None]:
        async with self._routing.task_models() as models:
            chunks = Synthesizer(models, self._tokenizer).synthesize(text, instruction, voice_prompt)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield chunk


class _NoModels:
    """For computing bounds only: a Synthesizer that never calls Triton."""

    async def infer(self, model: str, tensors: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no Triton calls here")

    def open_stream(self, model: str) -> Any:
        raise RuntimeError("no Triton calls here")


_NO_MODELS = _NoModels()


def build_transcribe_handler(deps: Any) -> TranscribeService:
    if deps.routing is not None:
        return TranscribeService(RoutedTranscriber(deps.routing, deps.tokenizer))
    return TranscribeService(Transcriber(deps.triton, deps.tokenizer))


def build_synthesize_handler(deps: Any) -> SynthesizeService:
    if deps.routing is not None:
        return SynthesizeService(RoutedSynthesizer(deps.routing, deps.tokenizer))
    return SynthesizeService(Synthesizer(deps.triton, deps.tokenizer))
