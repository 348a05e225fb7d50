"""The instructions Transcribe and Synthesize put before the backbone, and the checks on their inputs.

MinMo does ASR, speech translation and emotion recognition as plain backbone generation after an
instruction in the user turn, and instructed TTS as the speech decoder reading the backbone's states
of the text to speak; these functions build those prompts in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

MAX_TEXT_CHARS = 4096
MAX_INSTRUCTION_CHARS = 512
MAX_LANGUAGE_CHARS = 32
DEFAULT_SPEAK_INSTRUCTION = "Read the following text aloud."

# Codes clients send in TranscribeConfig.target_language, spelled out so the instruction reads naturally.
_LANGUAGES = {
    "ar": "Arabic",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "pt": "Portuguese",
    "ru": "Russian",
    "yue": "Cantonese",
    "zh": "Chinese",
}
_LANGUAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z -]*$")
# Split after sentence ends (Latin and CJK) and line breaks; the pieces concatenate to the input.
_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？；：\n])")
_WORD_END = re.compile(r"(?<=\s)")


class TaskInputError(ValueError):
    """A Transcribe or Synthesize argument the server cannot use; the message says what to fix."""


class TranscribeTask(StrEnum):
    ASR = "ASR"
    TRANSLATE = "TRANSLATE"
    EMOTION = "EMOTION"


@dataclass(frozen=True)
class TaskSpec:
    task: TranscribeTask
    instruction: str
    max_new_tokens: int


def transcribe_spec(task: str, target_language: str = "", *, max_new_tokens: int = 256) -> TaskSpec:
    """The instruction and token bound for a task named as in the proto (``TRANSCRIBE_TASK_UNSPECIFIED`` is ASR)."""
    name = task.strip().upper()
    if name in ("", "TRANSCRIBE_TASK_UNSPECIFIED"):
        name = TranscribeTask.ASR
    try:
        kind = TranscribeTask(name)
    except ValueError:
        raise TaskInputError(f"task {task!r} is not supported; use ASR, TRANSLATE or EMOTION") from None
    if kind is TranscribeTask.ASR:
        return TaskSpec(kind, "Transcribe the audio.", max_new_tokens)
    if kind is TranscribeTask.EMOTION:
        # One word: a short bound keeps a model that does not stop from rambling.
        return TaskSpec(kind, "What is the speaker's emotion? Answer with one word.", min(max_new_tokens, 16))
    return TaskSpec(kind, f"Translate the audio into {language_name(target_language)}.", max_new_tokens)


def language_name(code: str) -> str:
    """A target language code ("en", "zh") or name ("German") -> the name the instruction uses."""
    value = code.strip()
    if not value:
        raise TaskInputError('TRANSLATE needs target_language, e.g. "en" or "zh"')
    if value.lower() in _LANGUAGES:
        return _LANGUAGES[value.lower()]
    if len(value) > MAX_LANGUAGE_CHARS or not _LANGUAGE_NAME.match(value):
        raise TaskInputError(
            f"target_language {code[:40]!r} is neither a known code ({', '.join(sorted(_LANGUAGES))}) nor a "
            f"language name (letters, spaces and hyphens, at most {MAX_LANGUAGE_CHARS} characters)"
        )
    return value


def check_synthesis_text(text: str, instruction: str) -> tuple[str, str]:
    """Validated (text, instruction); an empty instruction becomes the plain read-aloud one."""
    if not text.strip():
        raise TaskInputError("text is empty; send the text to speak")
    if len(text) > MAX_TEXT_CHARS:
        raise TaskInputError(
            f"text has {len(text)} characters; at most {MAX_TEXT_CHARS} per request, split it into several requests"
        )
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise TaskInputError(
            f"instruction has {len(instruction)} characters; at most {MAX_INSTRUCTION_CHARS} "
            '(a style such as "happy", "speak faster", "Sichuan dialect")'
        )
    return text.strip(), instruction.strip() or DEFAULT_SPEAK_INSTRUCTION


def text_segments(text: str, encode: Callable[[str], list[int]], max_tokens: int) -> list[list[int]]:
    """Token ids of ``text`` cut at sentence ends (then word ends) into pieces of at most ``max_tokens``.

    Long text is spoken piece by piece, as CosyVoice does: the backbone and speech LM contexts stay
    bounded whatever the length, and each piece reads the same instruction.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    segments: list[list[int]] = []
    current = ""
    for unit in _units(text, encode, max_tokens):
        candidate = current + unit
        if len(encode(candidate.strip())) <= max_tokens:
            current = candidate
            continue
        if current.strip():
            segments.append(encode(current.strip()))
        current = unit
    if current.strip():
        segments.append(encode(current.strip()))
    return segments


def _units(text: str, encode: Callable[[str], list[int]], max_tokens: int) -> list[str]:
    """Sentences; a sentence over the bound becomes words; a word over it becomes character runs."""
    units: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(encode(sentence.strip())) <= max_tokens:
            units.append(sentence)
            continue
        for word in _WORD_END.split(sentence):
            if len(encode(word.strip())) <= max_tokens:
                units.append(word)
                continue
            run = ""
            for char in word:
                if run and len(encode(run + char)) > max_tokens:
                    units.append(run)
                    run = ""
                run += char
            units.append(run)
    return [unit for unit in units if unit]
