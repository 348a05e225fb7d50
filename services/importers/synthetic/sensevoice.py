"""A tiny FunASR SenseVoice folder: ``model.pt`` (``encoder.*`` + ASR heads), ``config.yaml``, ``am.mvn``.

Key names are written out from FunASR's ``SenseVoiceEncoderSmall`` / ``EncoderLayerSANM``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

SIZES = {
    "output_size": 32,
    "attention_heads": 2,
    "linear_units": 64,
    "num_blocks": 2,
    "tp_blocks": 1,
    "kernel_size": 11,
}
LFR_DIM = 80 * 7


def _sanm_layer(
    prefix: str, in_dim: int, d: int, ffn: int, kernel: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.05

    return {
        f"{prefix}.self_attn.linear_out.weight": rand(d, d),
        f"{prefix}.self_attn.linear_out.bias": rand(d),
        f"{prefix}.self_attn.linear_q_k_v.weight": rand(3 * d, in_dim),
        f"{prefix}.self_attn.linear_q_k_v.bias": rand(3 * d),
        f"{prefix}.self_attn.fsmn_block.weight": rand(d, 1, kernel),
        f"{prefix}.feed_forward.w_1.weight": rand(ffn, d),
        f"{prefix}.feed_forward.w_1.bias": rand(ffn),
        f"{prefix}.feed_forward.w_2.weight": rand(d, ffn),
        f"{prefix}.feed_forward.w_2.bias": rand(d),
        f"{prefix}.norm1.weight": 1 + rand(in_dim),
        f"{prefix}.norm1.bias": rand(in_dim),
        f"{prefix}.norm2.weight": 1 + rand(d),
        f"{prefix}.norm2.bias": rand(d),
    }


def sensevoice_state(seed: int = 0, sizes: dict[str, int] = SIZES) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    d, ffn, k = sizes["output_size"], sizes["linear_units"], sizes["kernel_size"]
    state = _sanm_layer("encoder.encoders0.0", LFR_DIM, d, ffn, k, gen)
    for i in range(sizes["num_blocks"] - 1):
        state.update(_sanm_layer(f"encoder.encoders.{i}", d, d, ffn, k, gen))
    for i in range(sizes["tp_blocks"]):
        state.update(_sanm_layer(f"encoder.tp_encoders.{i}", d, d, ffn, k, gen))
    for norm in ("after_norm", "tp_norm"):
        state[f"encoder.{norm}.weight"] = torch.ones(d)
        state[f"encoder.{norm}.bias"] = torch.zeros(d)
    # ASR heads of SenseVoiceSmall that are not part of the encoder.
    state["embed.weight"] = torch.randn(16, LFR_DIM, generator=gen)
    state["ctc.ctc_lo.weight"] = torch.randn(100, d, generator=gen)
    state["ctc.ctc_lo.bias"] = torch.zeros(100)
    return state


def config_yaml(sizes: dict[str, int] = SIZES) -> dict[str, Any]:
    return {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": {
            **sizes,
            "dropout_rate": 0.1,
            "input_layer": None,
            "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
        },
        "model": "SenseVoiceSmall",
        "frontend": "WavFrontend",
        "frontend_conf": {
            "fs": 16000,
            "window": "hamming",
            "n_mels": 80,
            "frame_length": 25,
            "frame_shift": 10,
            "lfr_m": 7,
            "lfr_n": 6,
            "cmvn_file": "am.mvn",
        },
    }


def am_mvn(shift: torch.Tensor, scale: torch.Tensor) -> str:
    """Kaldi-nnet text as FunASR ships it."""
    dim = shift.numel()

    def vec(t: torch.Tensor) -> str:
        return " ".join(f"{v:.6f}" for v in t.tolist())

    return (
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {vec(shift)} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {vec(scale)} ]\n</Nnet>\n"
    )


def build_sensevoice_folder(
    directory: Path, *, seed: int = 0, state: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    directory.mkdir(parents=True, exist_ok=True)
    state = state if state is not None else sensevoice_state(seed)
    torch.save(state, directory / "model.pt")
    (directory / "config.yaml").write_text(yaml.safe_dump(config_yaml()))
    gen = torch.Generator().manual_seed(seed + 1)
    shift, scale = -torch.rand(LFR_DIM, generator=gen) * 10, 0.1 + torch.rand(LFR_DIM, generator=gen)
    (directory / "am.mvn").write_text(am_mvn(shift, scale))
    return {**state, "am.add_shift": shift, "am.rescale": scale}
