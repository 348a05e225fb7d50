"""Token2Wav as a whole: config, sizes, key names, whole-utterance synthesis, persistence, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from services.common.weights import WeightsError
from services.vocoder import (
    SAMPLE_RATE,
    SAMPLES_PER_TOKEN,
    Token2Wav,
    VocoderConfig,
    build_smoke,
    load,
    save,
)


@pytest.fixture(scope="module")
def model() -> Token2Wav:
    return build_smoke(0)


def tokens(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, 6561, n).tolist()


def test_constants_and_what_the_triton_adapter_reads(model: Token2Wav) -> None:
    assert SAMPLES_PER_TOKEN == 960
    assert SAMPLE_RATE == 24000
    assert model.config.speech_token_size == 6561
    assert model.config.speaker_dim == 192


@pytest.mark.parametrize("name", ["smoke", "minmo"])
def test_config_round_trips_through_json_dict(name: str) -> None:
    import json

    config = VocoderConfig.preset(name)
    assert VocoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_config_rejects_what_breaks_the_contract() -> None:
    with pytest.raises(ValueError, match="unknown vocoder preset"):
        VocoderConfig.preset("large")
    hift = VocoderConfig.preset("smoke").hift
    with pytest.raises(ValueError, match="480 samples per mel frame"):
        dataclasses.replace(hift, upsample_rates=(8, 5, 2), upsample_kernel_sizes=(16, 11, 4))
    with pytest.raises(ValueError, match="crossfade_samples"):
        VocoderConfig.from_dict({"stream": {"crossfade_samples": 10**6}})
    with pytest.raises(ValueError, match="unknown FlowConfig fields"):
        VocoderConfig.from_dict({"flow": {"n_steps": 3}})


def test_minmo_sizes_follow_cosyvoice2_on_the_meta_device() -> None:
    with torch.device("meta"):
        big = Token2Wav(VocoderConfig.preset("minmo"))
    flow = sum(p.numel() for p in big.flow.parameters())
    hift = sum(p.numel() for p in big.hift.parameters())
    # Structural counts for CosyVoice 2's flow (CausalMaskedDiffWithXvec) and HiFTGenerator with
    # weight norm folded; a change here changes what the checkpoint importer must map.
    assert flow == 112_549_360
    assert hift == 20_806_557
    assert sum(p.numel() for p in big.flow.decoder.estimator.parameters()) == 71_302_480
    assert big.flow.input_embedding.weight.shape == (6561, 512)


def test_parameter_names_are_cosyvoice_names(model: Token2Wav) -> None:
    keys = set(model.state_dict())
    for key in [
        "flow.input_embedding.weight",
        "flow.spk_embed_affine_layer.weight",
        "flow.encoder_proj.weight",
        "flow.encoder.embed.out.0.weight",
        "flow.encoder.pre_lookahead_layer.conv1.weight",
        "flow.encoder.encoders.0.self_attn.linear_pos.weight",
        "flow.encoder.encoders.0.self_attn.pos_bias_u",
        "flow.encoder.up_layer.conv.weight",
        "flow.encoder.up_encoders.0.feed_forward.w_1.weight",
        "flow.encoder.after_norm.weight",
        "flow.decoder.estimator.time_mlp.linear_1.weight",
        "flow.decoder.estimator.down_blocks.0.0.block1.block.0.weight",
        "flow.decoder.estimator.down_blocks.0.1.0.attn1.to_q.weight",
        "flow.decoder.estimator.mid_blocks.0.1.0.ff.net.0.proj.weight",
        "flow.decoder.estimator.up_blocks.0.2.weight",
        "flow.decoder.estimator.final_proj.weight",
        "hift.m_source.l_linear.weight",
        "hift.conv_pre.weight",
        "hift.ups.2.weight",
        "hift.source_downs.0.weight",
        "hift.resblocks.0.activations1.0.alpha",
        "hift.f0_predictor.condnet.8.weight",
        "hift.conv_post.weight",
        "default_speaker",
    ]:
        assert key in keys, key
    assert model.flow.decoder.estimator.final_proj.weight.shape == (80, 32, 1)  # Conv1d layout


def test_whole_synthesis_length_range_and_determinism(model: Token2Wav) -> None:
    ids = tokens(40)
    audio = model.synthesize(ids)
    assert audio.dtype == np.float32 and audio.shape == (40 * SAMPLES_PER_TOKEN,)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert 0.02 < float(np.sqrt(np.mean(audio**2))) < 0.5  # audible, not saturated
    assert np.array_equal(audio, model.synthesize(ids))
    assert np.array_equal(audio, build_smoke(0).synthesize(ids))  # seeded weights, seeded noise
    assert not np.array_equal(audio, build_smoke(1).synthesize(ids))


def test_single_token_and_empty_utterances(model: Token2Wav) -> None:
    assert model.synthesize([17]).shape == (960,)
    assert model.synthesize([]).shape == (0,)


def test_audio_depends_on_tokens_and_speaker(model: Token2Wav) -> None:
    ids = tokens(30)
    base = model.synthesize(ids)
    other = model.synthesize(tokens(30, seed=1))
    rms = float(np.sqrt(np.mean(base**2)))
    assert float(np.sqrt(np.mean((base - other) ** 2))) > 0.2 * rms
    speaker = torch.randn(192, generator=torch.Generator().manual_seed(5))
    voiced = model.synthesize(ids, speaker=speaker)
    assert np.array_equal(voiced, model.synthesize(ids, speaker=speaker[None]))
    assert np.abs(voiced - base).max() > 1e-3
    assert np.array_equal(base, model.synthesize(ids, speaker=model.default_speaker))


def test_save_load_round_trip(model: Token2Wav, tmp_path: Path) -> None:
    save(model, tmp_path / "vocoder", "smoke")
    loaded = load(tmp_path / "vocoder")
    assert not loaded.training
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    ids = tokens(20)
    assert np.array_equal(model.synthesize(ids), loaded.synthesize(ids))


def test_load_refuses_another_stage_or_missing_folder(model: Token2Wav, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="missing"):
        load(tmp_path / "nothing")
    save(model, tmp_path / "vocoder", "smoke")
    config = tmp_path / "vocoder" / "config.json"
    config.write_text(config.read_text().replace('"stage": "vocoder"', '"stage": "encoder"'))
    with pytest.raises(WeightsError, match="expected 'vocoder'"):
        load(tmp_path / "vocoder")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([0, 6561], r"6561 is outside \[0, 6561\)"),
        ([-1], r"-1 is outside"),
        (torch.tensor([1.0, 2.0]), "integer ids"),
        ([1.5, 2.0], "integer ids"),
        (torch.tensor([True]), "integer ids"),
        (torch.zeros(2, 3, dtype=torch.long), "1-D"),
    ],
)
def test_bad_tokens_say_what_to_fix(model: Token2Wav, bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.synthesize(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        model.new_stream().push(bad)  # type: ignore[arg-type]


def test_integer_token_containers_are_accepted(model: Token2Wav) -> None:
    ids = tokens(6)
    expected = model.synthesize(ids)
    for form in (torch.tensor(ids, dtype=torch.int32), np.array(ids, dtype=np.int16), torch.tensor([ids])):
        assert np.array_equal(model.synthesize(form), expected)


@pytest.mark.parametrize(
    "speaker",
    [torch.zeros(191), torch.zeros(2, 192), torch.ones(192, dtype=torch.long), torch.full((192,), float("nan"))],
)
def test_bad_speaker_says_what_to_fix(model: Token2Wav, speaker: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="speaker"):
        model.synthesize([1, 2, 3], speaker=speaker)
    with pytest.raises(ValueError, match="speaker"):
        model.new_stream(speaker)
