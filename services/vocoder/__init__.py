"""vocoder stage (token2wav): CosyVoice 2 speech tokens -> 24 kHz PCM, whole or streamed."""

from __future__ import annotations

from pathlib import Path

from services.common.seeding import seeded
from services.common.weights import load_stage_tensors, load_state_strict, read_stage_config, save_stage

from .config import SAMPLE_RATE, SAMPLES_PER_TOKEN, FlowConfig, HiftConfig, StreamConfig, VocoderConfig
from .model import Token2Wav
from .smoke import smoke_token2wav
from .stream import VocoderStream, VocoderWork, push_batch

STAGE = "vocoder"

__all__ = [
    "SAMPLES_PER_TOKEN",
    "SAMPLE_RATE",
    "FlowConfig",
    "HiftConfig",
    "StreamConfig",
    "Token2Wav",
    "VocoderConfig",
    "VocoderStream",
    "VocoderWork",
    "build_smoke",
    "load",
    "push_batch",
    "save",
]


def build_smoke(seed: int = 0) -> Token2Wav:
    """Tiny seeded Token2Wav, identical bit for bit for a given seed on this torch version."""
    with seeded(seed):
        model = smoke_token2wav()
    return model.eval()


def save(module: Token2Wav, directory: Path, profile: str) -> None:
    save_stage(Path(directory), module, module.config, stage=STAGE, profile=profile)


def load(directory: Path) -> Token2Wav:
    directory = Path(directory)
    config_dict, _profile = read_stage_config(directory, stage=STAGE)
    model = Token2Wav(VocoderConfig.from_dict(config_dict))
    load_state_strict(model, load_stage_tensors(directory), source=str(directory))
    return model.eval()
