"""Transcribe (ASR, translation, emotion by instruction) and Synthesize (instructed TTS) over the five models."""

from orchestrator.tasks.prompts import TaskInputError, TranscribeTask
from orchestrator.tasks.synthesize import SynthesizeConfig, Synthesizer
from orchestrator.tasks.transcribe import TranscribeConfig, Transcriber
from orchestrator.tasks.voice import SpeakerEmbedder, smoke_speaker_embedding

__all__ = [
    "SpeakerEmbedder",
    "SynthesizeConfig",
    "Synthesizer",
    "TaskInputError",
    "TranscribeConfig",
    "TranscribeTask",
    "Transcriber",
    "smoke_speaker_embedding",
]
