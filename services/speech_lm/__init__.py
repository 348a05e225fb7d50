"""The speech_lm stage: MinMo's output projector and CosyVoice 2's speech-token LM."""

from __future__ import annotations

from pathlib import Path

import torch

from services.backbone.qwen2 import init_qwen2_weights
from services.common.seeding import seeded
from services.common.weights import load_stage_on_meta, save_stage
from services.speech_lm.model import SpeechLM, SpeechLMConfig
from services.speech_lm.stream import SpeechGeneration, SpeechLMStream

STAGE = "speech_lm"

__all__ = ["SpeechGeneration", "SpeechLM", "SpeechLMConfig", "SpeechLMStream", "build_smoke", "load", "save"]


def build_smoke(seed: int) -> SpeechLM:
    """The seeded smoke speech LM, identical bit for bit for a given seed and torch version."""
    with torch.device("meta"):
        module = SpeechLM(SpeechLMConfig.preset("smoke"))
    module.to_empty(device="cpu")
    with seeded(seed):
        init_qwen2_weights(module)
    return module.eval()


def save(module: SpeechLM, directory: Path, profile: str) -> None:
    save_stage(directory, module, module.config, stage=STAGE, profile=profile)


def load(directory: Path) -> SpeechLM:
    return load_stage_on_meta(directory, stage=STAGE, build=lambda d: SpeechLM(SpeechLMConfig.from_dict(d)))
