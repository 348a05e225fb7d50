"""The backbone stage: a Qwen2 LLM over sessions of text tokens and speech embeddings."""

from __future__ import annotations

from pathlib import Path

import torch

from services.backbone.backbone import Backbone, BackboneSession, BackboneStep, GeneratedToken, Generation, StepOutput
from services.backbone.kv_cache import KVCache
from services.backbone.prompt import ChatPrompt, Segment, SpeechSlot, SpeechTurn, TextTurn, feed
from services.backbone.qwen2 import Qwen2Config, Qwen2Model, init_qwen2_weights
from services.backbone.tokenizer import SmokeByteTokenizer, Tokenizer
from services.common.seeding import seeded
from services.common.weights import load_stage_on_meta, save_stage

STAGE = "backbone"
# The backbone's config is the Qwen2 config itself (it decides tie_word_embeddings too).
BackboneConfig = Qwen2Config

__all__ = [
    "Backbone",
    "BackboneConfig",
    "BackboneSession",
    "BackboneStep",
    "ChatPrompt",
    "GeneratedToken",
    "Generation",
    "KVCache",
    "Qwen2Config",
    "Qwen2Model",
    "Segment",
    "SmokeByteTokenizer",
    "SpeechSlot",
    "SpeechTurn",
    "StepOutput",
    "TextTurn",
    "Tokenizer",
    "build_smoke",
    "feed",
    "load",
    "save",
]


def build_smoke(seed: int) -> Backbone:
    """The seeded smoke backbone, identical bit for bit for a given seed and torch version."""
    with torch.device("meta"):
        module = Backbone(Qwen2Config.preset("smoke"))
    module.to_empty(device="cpu")
    with seeded(seed):
        init_qwen2_weights(module)
    return module.eval()


def save(module: Backbone, directory: Path, profile: str) -> None:
    save_stage(directory, module, module.config, stage=STAGE, profile=profile)


def load(directory: Path) -> Backbone:
    """Rebuild a saved backbone; built on the meta device first so 7B weights are not initialised twice."""
    return load_stage_on_meta(directory, stage=STAGE, build=lambda d: Backbone(Qwen2Config.from_dict(d)))
