"""The gRPC side of Transcribe and Synthesize: protobuf in, the task objects, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from minmo.v1 import minmo_pb2 as pb

from orchestrator.audio import AudioFormatError, InputAudioDecoder, encode_pcm16_24k
from orchestrator.errors import InvalidArgument
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
    def __init__(self, transcriber: Transcriber) -> None:
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
    def __init__(self, synthesizer: Synthesizer) -> None:
        self.synthesizer = synthesizer

    async def synthesize(self, request: pb.SynthesizeRequest, context: Any) -> AsyncIterator[pb.SynthesizeResponse]:
        sequence = 0
        try:
            chunks = self.synthesizer.synthesize(request.text, request.instruction, request.voice_prompt or None)
            async for chunk in chunks:
                yield pb.SynthesizeResponse(audio=encode_pcm16_24k(chunk), sequence=sequence)
                sequence += 1
        except (AudioFormatError, TaskInputError) as exc:
            raise InvalidArgument(str(exc)) from exc


def build_transcribe_handler(deps: Any) -> TranscribeService:
    return TranscribeService(Transcriber(deps.triton))


def build_synthesize_handler(deps: Any) -> SynthesizeService:
    return SynthesizeService(Synthesizer(deps.triton))
