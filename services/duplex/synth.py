"""The dialogues' audio sources, re-exported: they live in ``services.speech_synth``, which imports no torch,
so the orchestrator's clients (``minmo talk``, ``minmo demo``) and the perf harness use them without torch."""

from __future__ import annotations

from services.speech_synth import (
    DIGITAL_SILENCE_P,
    SAMPLE_RATE,
    background,
    default_cache_dir,
    espeak,
    noise_burst,
    trim,
)

__all__ = ["DIGITAL_SILENCE_P", "SAMPLE_RATE", "background", "default_cache_dir", "espeak", "noise_burst", "trim"]
