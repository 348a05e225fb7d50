"""Encoder module: seeded determinism, save/load, config round trip, key names, minmo sizes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from services.common.weights import WeightsError
from services.encoder import EncoderConfig, SpeechEncoder, build_smoke, load, save

PCM = (0.3 * np.sin(np.arange(24000) * 2 * np.pi * 180 / 16000)).astype(np.float32)


def test_build_smoke_is_deterministic_per_seed() -> None:
    a, b, c = build_smoke(0), build_smoke(0), build_smoke(1)
    state_a, state_b, state_c = a.state_dict(), b.state_dict(), c.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not torch.equal(
        state_a["encoders0.0.self_attn.linear_q_k_v.weight"], state_c["encoders0.0.self_attn.linear_q_k_v.weight"]
    )
    assert torch.equal(a.encode(PCM), b.encode(PCM))
    assert not a.training


def test_build_smoke_leaves_the_callers_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_smoke(5)
    assert torch.equal(torch.rand(3), expected)


def test_smoke_sizes_and_frame_rate() -> None:
    model = build_smoke(0)
    config = model.config
    assert (config.d_model, config.attention_heads, config.linear_units, config.kernel_size) == (128, 2, 256, 11)
    assert len(model.encoders0) + len(model.encoders) + len(model.tp_encoders) == 4
    assert (config.chunk_frames, config.left_chunks, config.llm_dim) == (4, 4, 256)
    assert model.frame_ms == 120 and config.chunk_ms == 240
    assert model.encode(PCM).shape[1] == 256


def test_parameter_names_follow_sensevoice() -> None:
    keys = set(build_smoke(0).state_dict())
    for key in [
        "frontend.add_shift",
        "frontend.rescale",
        "encoders0.0.self_attn.linear_q_k_v.weight",
        "encoders0.0.self_attn.fsmn_block.weight",
        "encoders.1.self_attn.linear_out.bias",
        "encoders.1.feed_forward.w_1.weight",
        "encoders.0.norm1.weight",
        "tp_encoders.0.norm2.bias",
        "after_norm.weight",
        "tp_norm.bias",
        "projector.conv.weight",
        "projector.blocks.1.self_attn.linear_q.weight",
        "projector.blocks.0.feed_forward.w_2.bias",
    ]:
        assert key in keys, key


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = build_smoke(3)
    save(model, tmp_path / "encoder", profile="smoke")
    meta = json.loads((tmp_path / "encoder" / "config.json").read_text())
    assert meta["stage"] == "encoder" and meta["profile"] == "smoke"
    loaded = load(tmp_path / "encoder")
    assert loaded.config == model.config and not loaded.training
    assert torch.equal(loaded.encode(PCM), model.encode(PCM))


def test_load_rejects_weights_of_another_config(tmp_path: Path) -> None:
    save(build_smoke(0), tmp_path / "enc", profile="smoke")
    meta_path = tmp_path / "enc" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["linear_units"] = 512
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"feed_forward\.w_1\.weight"):
        load(tmp_path / "enc")


def test_config_round_trip_and_validation() -> None:
    for name in ("smoke", "minmo"):
        config = EncoderConfig.preset(name)
        assert EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown encoder preset"):
        EncoderConfig.preset("large")
    with pytest.raises(ValueError, match="chunk_frames"):
        EncoderConfig(chunk_frames=5)
    with pytest.raises(ValueError, match="fsmn_right_context"):
        EncoderConfig(fsmn_right_context=11)
    with pytest.raises(ValueError, match="unknown EncoderConfig fields: bogus"):
        EncoderConfig.from_dict({"d_model": 128, "bogus": 1})


def test_a_look_ahead_fsmn_streams_as_an_approximation() -> None:
    """Imported SenseVoice weights look ahead (issue 16): the stream runs, and differs from the whole."""
    torch.manual_seed(0)
    model = SpeechEncoder(replace(EncoderConfig.preset("smoke"), fsmn_right_context=5)).eval()
    whole = model.encode(PCM)
    stream = model.new_stream()
    streamed = torch.cat([stream.push(PCM[:7000]), stream.push(PCM[7000:], final=True)])
    assert streamed.shape == whole.shape and whole.isfinite().all()
    assert (streamed - whole).abs().max() > 1e-3, "chunk ends read zeros for frames not yet received"


def test_minmo_parameter_count_matches_the_paper() -> None:
    """DESIGN.md: ~636M encoder + ~170M projector; our assumed sizes give 627.4M + 170.7M."""
    config = EncoderConfig.preset("minmo")
    with torch.device("meta"):
        model = SpeechEncoder(config)
    counts = {"encoder": 0, "projector": 0}
    for name, param in model.named_parameters():
        counts["projector" if name.startswith("projector.") else "encoder"] += param.numel()
    assert abs(counts["encoder"] / 636e6 - 1) < 0.02, counts
    assert abs(counts["projector"] / 170e6 - 1) < 0.02, counts
    assert model.frame_ms == 120 and config.llm_dim == 3584
