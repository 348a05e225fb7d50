"""Qwen chat layout (ChatML) as segments: token-id lists and slots for speech embeddings.

The live path feeds a session piece by piece (speech arrives in chunks between ``user_speech_open``
and ``user_speech_close``); after a failover or an expired stream the orchestrator rebuilds the same
context from the Redis history with :meth:`ChatPrompt.conversation` (the models' side feeds it with
``services.backbone.prompt.feed``). Both paths use these functions, so a rebuilt context is
position-for-position the live one. The prompt is a contract between the orchestrator and the backbone
(the model was trained on this layout), so it lives here, torch-free, for both.

Layout of a spoken user turn followed by the assistant's turn::

    <|im_start|>user\\n<|audio_bos|>[speech]<|audio_eos|><|im_end|>\\n<|im_start|>assistant\\n ... <|im_end|>\\n
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from minmo_contracts.tokenizer import AUDIO_BOS, AUDIO_EOS, IM_END, IM_START, Tokenizer


@dataclass(frozen=True)
class SpeechSlot:
    """Where one speech turn's encoder embeddings go; ``key`` names them in :func:`feed`'s mapping."""

    key: str


Segment: TypeAlias = list[int] | SpeechSlot


@dataclass(frozen=True)
class TextTurn:
    """A typed user turn, or an assistant turn; an assistant turn should carry its ``token_ids``
    (as generated, cut to what was played) so the rebuilt context matches the live one exactly."""

    role: Literal["user", "assistant"]
    text: str = ""
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SpeechTurn:
    """A spoken user turn; ``instruction`` (e.g. "Transcribe the audio.") precedes the audio."""

    key: str
    instruction: str | None = None


Turn: TypeAlias = TextTurn | SpeechTurn


class ChatPrompt:
    """Token ids of the ChatML pieces for one tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._im_start = tokenizer.special_token_id(IM_START)
        self._im_end = tokenizer.special_token_id(IM_END)
        self._audio_bos = tokenizer.special_token_id(AUDIO_BOS)
        self._audio_eos = tokenizer.special_token_id(AUDIO_EOS)
        self._newline = tokenizer.encode("\n")

    def _open(self, role: str) -> list[int]:
        return [self._im_start, *self._tok.encode(role), *self._newline]

    def system(self, text: str) -> list[Segment]:
        return [[*self._open("system"), *self._tok.encode(text), *self.assistant_close()]]

    def user_text(self, text: str) -> list[Segment]:
        return [[*self._open("user"), *self._tok.encode(text), *self.assistant_close()]]

    def user_speech_open(self, instruction: str | None = None) -> list[int]:
        text = self._tok.encode(instruction) if instruction else []
        return [*self._open("user"), *text, self._audio_bos]

    def user_speech_close(self) -> list[int]:
        return [self._audio_eos, *self.assistant_close()]

    def user_speech(self, key: str, instruction: str | None = None) -> list[Segment]:
        return [self.user_speech_open(instruction), SpeechSlot(key), self.user_speech_close()]

    def assistant_open(self) -> list[int]:
        return self._open("assistant")

    def assistant_close(self) -> list[int]:
        """Closes any turn; appended after an assistant turn ends or is cut at barge-in."""
        return [self._im_end, *self._newline]

    def assistant_turn(self, token_ids: Sequence[int]) -> list[Segment]:
        return [[*self.assistant_open(), *token_ids, *self.assistant_close()]]

    def turn(self, turn: Turn) -> list[Segment]:
        if isinstance(turn, SpeechTurn):
            return self.user_speech(turn.key, turn.instruction)
        if turn.role == "user":
            return self.user_text(turn.text)
        ids = turn.token_ids if turn.token_ids is not None else self._tok.encode(turn.text)
        return self.assistant_turn(ids)

    def conversation(
        self, turns: Sequence[Turn], *, system_prompt: str | None = None, open_assistant: bool = False
    ) -> list[Segment]:
        """The whole context for ``turns``, adjacent id lists merged; optionally ready for a reply."""
        segments: list[Segment] = self.system(system_prompt) if system_prompt else []
        for turn in turns:
            segments.extend(self.turn(turn))
        if open_assistant:
            segments.append(self.assistant_open())
        return merge_segments(segments)


def merge_segments(segments: Sequence[Segment]) -> list[Segment]:
    """Join neighbouring id lists so a context is fed with as few forward passes as possible."""
    merged: list[Segment] = []
    for segment in segments:
        if isinstance(segment, list) and merged and isinstance(merged[-1], list):
            merged[-1] = [*merged[-1], *segment]
        elif isinstance(segment, list):
            if segment:
                merged.append(list(segment))
        else:
            merged.append(segment)
    return merged
