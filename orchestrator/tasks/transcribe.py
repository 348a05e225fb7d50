"""Transcribe: ASR, speech translation or emotion recognition as backbone generation by instruction.

The audio streams through the encoder into a fresh backbone session as it arrives, so when the
client's audio ends only the tail is left to encode and the answer starts at once; no duplex
predictor runs (the client's end of audio is the end of the turn). The session's context is
``<|im_start|>user\\n{instruction}<|audio_bos|>[speech]<|audio_eos|><|im_end|>\\n<|im_start|>assistant\\n``;
the answer is generated greedily up to a bound and streamed as text deltas.

Everything runs in the caller's task (no background tasks), so cancelling the caller or closing the
iterator stops the work; the backbone session and the encoder stream are ended on Triton on every
exit, also on cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from minmo_contracts import backbone
from minmo_contracts.prompt import ChatPrompt
from minmo_contracts.tokenizer import SmokeByteTokenizer, Tokenizer
from orchestrator.audio import MODEL_RATE
from orchestrator.stages.encoder_feed import EncoderFeed
from orchestrator.stages.ids import new_stream_id
from orchestrator.tasks.prompts import TaskInputError, transcribe_spec
from orchestrator.tasks.streams import closing, drain, end_backbone_session
from orchestrator.triton.client import ModelStream
from orchestrator.triton.errors import TritonStageError
from orchestrator.triton.routed import ModelCalls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscribeConfig:
    max_new_tokens: int = 256
    # The backbone's context must hold the audio (one position per 120 ms) plus the answer: 300 s
    # is 2500 positions, within the smoke backbone's 4096.
    max_audio_seconds: float = 300.0
    cleanup_timeout_s: float = 5.0


class IncrementalDecoder:
    """Token ids in, text deltas out; a tail that does not decode to whole characters yet is held back.

    Decodes a short window (the last emitted piece plus what is new) instead of the whole text, as
    text-generation-inference does: a tokenizer may render a token differently next to its
    neighbours, and the window gives it the left context it needs.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""  # nothing visible yet, or an incomplete UTF-8 sequence at the end
        self._prefix, self._read = self._read, len(self._ids)
        return now[len(before) :]

    def flush(self) -> str:
        """What is held back at the end (an incomplete tail decodes with replacement characters)."""
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return now[len(before) :]


@dataclass
class _Streams:
    """What a call has open on Triton, so every exit can end exactly that."""

    backbone: ModelStream
    session_id: int
    encoder: EncoderFeed
    session_open: bool = False


class Transcriber:
    def __init__(
        self, models: ModelCalls, tokenizer: Tokenizer | None = None, config: TranscribeConfig | None = None
    ) -> None:
        self._models = models
        self._tokenizer = tokenizer or SmokeByteTokenizer()
        self._prompt = ChatPrompt(self._tokenizer)
        self.config = config or TranscribeConfig()

    async def transcribe(
        self, audio: AsyncIterator[np.ndarray], task: str, target_language: str = ""
    ) -> AsyncGenerator[str, None]:
        """Text deltas of the answer for 16 kHz float32 ``audio``; ends when the answer is complete.

        ``task`` is ASR, TRANSLATE or EMOTION (as in the proto); TRANSLATE needs ``target_language``.
        Raises :class:`TaskInputError` for a bad task, no audio or too much audio, and
        ``TritonStageError`` when a model fails.
        """
        spec = transcribe_spec(task, target_language, max_new_tokens=self.config.max_new_tokens)
        open_ids = self._prompt.user_speech_open(spec.instruction)
        answer_ids = self._prompt.user_speech_close() + self._prompt.assistant_open()
        streams = _Streams(self._models.open_stream(backbone.NAME), new_stream_id(), EncoderFeed(self._models))
        try:
            await drain(
                streams.backbone.request(backbone.append_request(open_ids), sequence_id=streams.session_id, start=True)
            )
            streams.session_open = True
            await self._listen(audio, streams)
            decoder = IncrementalDecoder(self._tokenizer.decode)
            request = backbone.generate_request(answer_ids, max_new_tokens=spec.max_new_tokens, temperature=0.0)
            async with closing(streams.backbone.request(request, sequence_id=streams.session_id)) as out:
                async for response in out:
                    token_id = backbone.BackboneOutput.read(response).token_id
                    if token_id is not None and (delta := decoder.push(token_id)):
                        yield delta
            if tail := decoder.flush():
                yield tail
        finally:
            await self._close(streams)

    async def _listen(self, audio: AsyncIterator[np.ndarray], streams: _Streams) -> None:
        """Encode the audio as it arrives and append the embeddings to the session, then flush the encoder."""
        received = 0
        limit = int(self.config.max_audio_seconds * MODEL_RATE)
        async for chunk in audio:
            pcm = np.asarray(chunk, dtype=np.float32).reshape(-1)
            if pcm.size == 0:
                continue  # a resampler holding samples back yields empty pieces
            received += pcm.size
            if received > limit:
                raise TaskInputError(
                    f"audio is longer than {self.config.max_audio_seconds:g} s; split it into several requests"
                )
            await self._encode(pcm, streams, end=False)
        if not received:
            raise TaskInputError("no audio arrived; send at least one audio chunk after the config")
        await self._encode(np.zeros(0, np.float32), streams, end=True)

    async def _encode(self, pcm: np.ndarray, streams: _Streams, *, end: bool) -> None:
        embeddings = await streams.encoder.push(pcm, end=end)
        if embeddings.shape[0]:
            await drain(
                streams.backbone.request(backbone.append_request(speech=embeddings), sequence_id=streams.session_id)
            )

    async def _close(self, streams: _Streams) -> None:
        """End what is open on Triton; best effort within a deadline, so a failing server cannot hang the caller."""
        try:
            async with asyncio.timeout(self.config.cleanup_timeout_s):
                await streams.encoder.close()
                if streams.session_open:
                    await end_backbone_session(self._models, streams.backbone, streams.session_id)
        except (TritonStageError, TimeoutError) as exc:
            # The state is soft: Triton expires an idle stream on its own.
            log.warning("could not end the transcription's Triton streams: %s", exc)
        finally:
            await streams.backbone.close()
