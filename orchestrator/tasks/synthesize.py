"""Synthesize: instructed TTS as MinMo does it, the backbone's states of given text -> speech_lm -> vocoder.

The backbone reads ``<|im_start|>user\\n{instruction}<|im_end|>\\n<|im_start|>assistant\\n{text}`` (a
session per call, one prefill per text segment: the session is truncated back to the instruction
before each). The voice decoder then reads the text the way the speak path feeds it generated text:
a query vector first, then one semantic vector per text token, which speech_lm interleaves 5 text
: 15 speech tokens; speech tokens go to the vocoder 15 (600 ms) at a time.

Semantic vectors. For a generated token the speak path uses [input embedding of the token ++ the
hidden state it was sampled from]. For given text the second half is exact: the prefill's HIDDEN
of the position before the token. The first half needs the tokens' input embeddings, which the
backbone's prefill response does not return today (its EMBEDDINGS output is empty for prefill).
Until it does, the token's own last-layer state (HIDDEN at its position) stands in: it is a
function of that embedding in context, and it is what the backbone exposes. When a backbone
returns prefill EMBEDDINGS with one row per appended position, they are used instead, unchanged
code. The query's user-input half is likewise the mean over the instruction turn.

Long text is spoken segment by segment (``text_segments``) into one vocoder stream, so the audio
is continuous and exactly 960 samples per speech token. Everything runs in the caller's task:
speech_lm keeps generating on the server while the vocoder renders, and closing the iterator
stops what is in flight (a STOP to the model, never a cancelled RPC) and ends every stream still open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import numpy as np

from minmo_contracts import backbone, speech_lm, vocoder
from minmo_contracts.prompt import ChatPrompt
from minmo_contracts.tokenizer import SmokeByteTokenizer, Tokenizer
from orchestrator.stages.grouping import SpeechGrouping
from orchestrator.stages.ids import new_stream_id
from orchestrator.tasks.prompts import check_synthesis_text, text_segments
from orchestrator.tasks.streams import closing, drain, end_backbone_session
from orchestrator.tasks.voice import SpeakerEmbedder, decode_voice_prompt, smoke_speaker_embedding
from orchestrator.triton.client import ModelStream
from orchestrator.triton.errors import TritonStageError
from orchestrator.triton.routed import ModelCalls

log = logging.getLogger(__name__)
SECONDS_PER_SPEECH_TOKEN = 0.04  # 25 Hz speech tokens: 960 samples of 24 kHz audio each


@dataclass(frozen=True)
class SynthesizeConfig(SpeechGrouping):
    tokens_per_chunk: int = 15  # speech tokens per vocoder request: 600 ms of audio
    # Text tokens per segment: bounds the backbone and speech_lm contexts (200 -> ~860 speech_lm positions).
    max_segment_tokens: int = 200
    temperature: float = 0.0  # speech_lm sampling; 0 is greedy, the same audio for the same request
    cleanup_timeout_s: float = 5.0


@dataclass
class _Streams:
    backbone: ModelStream
    speech_lm: ModelStream
    vocoder: ModelStream
    session_id: int
    vocoder_id: int
    session_open: bool = False
    vocoder_open: bool = False


class Synthesizer:
    def __init__(
        self,
        models: ModelCalls,
        tokenizer: Tokenizer | None = None,
        config: SynthesizeConfig | None = None,
        speaker_embedding: SpeakerEmbedder = smoke_speaker_embedding,
    ) -> None:
        self._models = models
        self._tokenizer = tokenizer or SmokeByteTokenizer()
        self._prompt = ChatPrompt(self._tokenizer)
        self._speaker_embedding = speaker_embedding
        self.config = config or SynthesizeConfig()

    def max_audio_seconds(self, text: str, instruction: str) -> float:
        """The most audio ``text`` can make: what a tenant's audio quota reserves before the call runs.

        Each segment's speech LM request is bounded by ``MAX_TOKENS`` (its full groups of text, then
        the tail); a speech token is 40 ms. Raises :class:`TaskInputError` for text the call would refuse.
        """
        text, _ = check_synthesis_text(text, instruction)
        c = self.config
        tokens = sum(
            len(ids) // c.text_per_group * c.tokens_per_group + c.max_tail_tokens
            for ids in text_segments(text, self._tokenizer.encode, c.max_segment_tokens)
        )
        return tokens * SECONDS_PER_SPEECH_TOKEN

    async def synthesize(
        self, text: str, instruction: str, voice_prompt: bytes | None
    ) -> AsyncGenerator[np.ndarray, None]:
        """24 kHz float32 audio chunks of ``text`` spoken as ``instruction`` says, in the prompt's voice.

        Raises :class:`TaskInputError` for empty or too long text or instruction, ``AudioFormatError``
        for a voice prompt that is not 0.5-30 s of 16 kHz PCM16, ``TritonStageError`` when a model fails.
        """
        text, instruction = check_synthesis_text(text, instruction)
        speaker = None
        if voice_prompt:
            pcm = decode_voice_prompt(voice_prompt)
            speaker = await asyncio.to_thread(self._speaker_embedding, pcm)
        segments = text_segments(text, self._tokenizer.encode, self.config.max_segment_tokens)
        user_ids = self._prompt.user_text(instruction)[0]
        assert isinstance(user_ids, list)
        prefix_ids = user_ids + self._prompt.assistant_open()
        streams = _Streams(
            self._models.open_stream(backbone.NAME),
            self._models.open_stream(speech_lm.NAME),
            self._models.open_stream(vocoder.NAME),
            new_stream_id(),
            new_stream_id(),
        )
        try:
            (prefix_outputs,) = await drain(
                streams.backbone.request(
                    backbone.append_request(prefix_ids), sequence_id=streams.session_id, start=True
                )
            )
            streams.session_open = True
            prefix = backbone.BackboneOutput.read(prefix_outputs)
            user_input = _token_vectors(prefix, len(prefix_ids))[: len(user_ids)].mean(axis=0)
            last_hidden = prefix.hidden[-1]
            pending: list[int] = []
            for ids in segments:
                (outputs,) = await drain(
                    streams.backbone.request(
                        backbone.append_request(ids, truncate_to=prefix.context_length),
                        sequence_id=streams.session_id,
                    )
                )
                out = backbone.BackboneOutput.read(outputs)
                query = np.concatenate([user_input, last_hidden])
                previous = np.concatenate([last_hidden[None], out.hidden[:-1]])
                semantic = np.concatenate([_token_vectors(out, len(ids)), previous], axis=1)
                # Closed explicitly: an abandoned inner generator would keep its speech_lm request running.
                async with closing(self._speak_segment(streams, query, semantic, pending, speaker)) as spoken:
                    async for audio in spoken:
                        yield audio
            for audio in await self._vocode(streams, pending, speaker, end=True):
                yield audio
        finally:
            await self._close(streams)

    async def _speak_segment(
        self,
        streams: _Streams,
        query: np.ndarray,
        semantic: np.ndarray,
        pending: list[int],
        speaker: np.ndarray | None,
    ) -> AsyncIterator[np.ndarray]:
        """One speech_lm stream over a segment (it interleaves the groups itself); audio per 15 tokens."""
        c = self.config
        full_groups = len(semantic) // c.text_per_group
        request = speech_lm.request(
            semantic,
            query=query,
            max_tokens=full_groups * c.tokens_per_group + c.max_tail_tokens,
            until_eos=True,
            temperature=c.temperature,
            seed=0,
        )
        responses = streams.speech_lm.request(request, sequence_id=new_stream_id(), start=True, end=True)
        async with closing(responses) as out:
            async for response in out:
                pending.extend(int(t) for t in speech_lm.SpeechLMOutput.read(response).speech_tokens)
                if len(pending) >= c.tokens_per_chunk:
                    for audio in await self._vocode(streams, pending, speaker, end=False):
                        yield audio

    async def _vocode(
        self, streams: _Streams, pending: list[int], speaker: np.ndarray | None, *, end: bool
    ) -> list[np.ndarray]:
        """Send ``pending`` (emptied) to the vocoder stream and return its audio; ``end`` flushes the stream.

        Read whole before the caller yields, so a caller that stops there leaves no request half read.
        """
        if not pending and not streams.vocoder_open:
            return []  # no speech at all: nothing to flush
        start = not streams.vocoder_open
        request = vocoder.request(pending, speaker=speaker if start else None)
        pending.clear()
        streams.vocoder_open = True
        outputs = await drain(streams.vocoder.request(request, sequence_id=streams.vocoder_id, start=start, end=end))
        if end:
            streams.vocoder_open = False
        audio = [vocoder.VocoderOutput.read(out).audio for out in outputs]
        return [samples for samples in audio if samples.size]

    async def _close(self, streams: _Streams) -> None:
        """End the backbone session and an unfinished vocoder stream; speech_lm streams end with their request."""
        try:
            async with asyncio.timeout(self.config.cleanup_timeout_s):
                # A cancelled vocoder request already freed its stream on Triton (per-turn state).
                if streams.vocoder_open and not streams.vocoder.cancelled:
                    await drain(
                        streams.vocoder.request(vocoder.end_request(), sequence_id=streams.vocoder_id, end=True)
                    )
                if streams.session_open:
                    await end_backbone_session(self._models, streams.backbone, streams.session_id)
        except (TritonStageError, TimeoutError) as exc:
            log.warning("could not end the synthesis' Triton streams: %s", exc)
        finally:
            for stream in (streams.backbone, streams.speech_lm, streams.vocoder):
                await stream.close()


def _token_vectors(prefill: backbone.BackboneOutput, count: int) -> np.ndarray:
    """Input embeddings of the appended tokens when the backbone returns them, else their HIDDEN (see above)."""
    if prefill.embeddings.ndim == 2 and prefill.embeddings.shape[0] == count:
        return prefill.embeddings
    return prefill.hidden
