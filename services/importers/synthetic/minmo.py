"""A tiny MinMo folder in the contract of :mod:`services.importers.minmo` (our own key names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from services.duplex import DuplexConfig, DuplexPredictor
from services.encoder import EncoderConfig
from services.encoder.model import Projector

PROJECTOR: dict[str, Any] = {"projector_layers": 2, "projector_heads": 4, "projector_ffn": 96, "projector_stride": 2}
DUPLEX: dict[str, Any] = {"d_model": 32, "num_heads": 2, "ffn_dim": 64, "window": 16}


def build_minmo_folder(
    directory: Path, *, llm: int, encoder_width: int, speech_lm_width: int, seed: int = 0
) -> dict[str, dict[str, torch.Tensor]]:
    """Write the three safetensors files and ``config.json``; returns their tensors by file stem."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    enc_config = EncoderConfig(d_model=encoder_width, llm_dim=llm, **PROJECTOR)
    files = {
        "input_projector": {k: v.contiguous() for k, v in Projector(enc_config).state_dict().items()},
        "output_projector": {
            "weight": torch.randn(speech_lm_width, 2 * llm) * 0.02,
            "bias": torch.zeros(speech_lm_width),
        },
        "duplex": dict(DuplexPredictor(DuplexConfig(llm_dim=llm, **DUPLEX)).state_dict()),
    }
    for stem, tensors in files.items():
        save_file(tensors, str(directory / f"{stem}.safetensors"))
    (directory / "config.json").write_text(json.dumps({"input_projector": PROJECTOR, "duplex": DUPLEX}, indent=2))
    return files
