"""Voice encoder stage: 16 kHz PCM -> SenseVoice-style SAN-M encoder -> LLM-width embeddings every 120 ms."""

from __future__ import annotations

from pathlib import Path

import torch

from services.common.seeding import seeded
from services.common.weights import load_stage_tensors, load_state_strict, read_stage_config, save_stage
from services.encoder.batch import EncoderWork, encode_batch
from services.encoder.config import EncoderConfig, count_fbank_frames, count_output_frames
from services.encoder.model import EncoderState, SpeechEncoder
from services.encoder.stream import EncoderStream

STAGE = "encoder"

__all__ = [
    "EncoderConfig",
    "EncoderState",
    "EncoderStream",
    "EncoderWork",
    "SpeechEncoder",
    "build_smoke",
    "count_fbank_frames",
    "count_output_frames",
    "encode_batch",
    "load",
    "save",
]


def build_smoke(seed: int) -> SpeechEncoder:
    """The tiny seeded encoder of the smoke profile, identical bit for bit for a given seed."""
    config = EncoderConfig.preset("smoke")
    with seeded(seed):
        model = SpeechEncoder(config)
        # Near-identity CMVN: smoke has no feature statistics; a small seeded spread keeps the
        # buffers distinguishable in save/load tests without changing the feature scale much.
        with torch.no_grad():
            model.frontend.add_shift.normal_(0.0, 0.1)
            model.frontend.rescale.copy_(1.0 + 0.01 * torch.randn(config.lfr_dim))
    return model.eval()


def save(module: SpeechEncoder, directory: Path, profile: str) -> None:
    save_stage(directory, module, module.config, stage=STAGE, profile=profile)


def load(directory: Path) -> SpeechEncoder:
    """Rebuild the encoder saved in ``directory`` (eval mode); fails naming any mismatched tensor."""
    config_dict, _profile = read_stage_config(directory, stage=STAGE)
    model = SpeechEncoder(EncoderConfig.from_dict(config_dict))
    load_state_strict(model, load_stage_tensors(directory), source=str(directory))
    return model.eval()
