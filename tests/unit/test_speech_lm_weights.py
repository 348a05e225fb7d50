"""Speech-LM construction: seeded smoke weights, minmo sizes, the on-disk round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from services.common.weights import WeightsError
from services.speech_lm import SpeechLM, SpeechLMConfig, build_smoke, load, save


def test_build_smoke_is_deterministic_and_seed_dependent() -> None:
    a, b, c = build_smoke(0).state_dict(), build_smoke(0).state_dict(), build_smoke(1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["llm_decoder.weight"], c["llm_decoder.weight"])


def test_minmo_sizes_on_the_meta_device() -> None:
    config = SpeechLMConfig.preset("minmo")
    body = config.body
    assert (body.hidden_size, body.num_hidden_layers, body.num_attention_heads) == (896, 24, 14)
    assert (body.num_key_value_heads, body.intermediate_size, body.rope_theta) == (2, 4864, 1e6)
    with torch.device("meta"):
        lm = SpeechLM(config)
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in lm.named_children()}
    # Qwen2.5-0.5B is 494,032,768 parameters; without its 151936 x 896 text table (unused here):
    assert counts["llm"] == 494_032_768 - 151_936 * 896 == 357_898_112
    assert counts["output_projector"] == 2 * 3584 * 896 + 896 == 6_423_424
    assert counts["speech_embedding"] == 6564 * 896
    assert counts["llm_decoder"] == 6564 * 896 + 6564
    assert counts["llm_embedding"] == 2 * 896
    names = {name for name, _ in lm.named_parameters()}
    assert "llm.layers.23.self_attn.k_proj.bias" in names and "llm.norm.weight" in names


def test_save_load_round_trip(tmp_path: Path) -> None:
    lm = build_smoke(0)
    save(lm, tmp_path / "speech_lm", "smoke")
    loaded = load(tmp_path / "speech_lm")
    assert loaded.config == lm.config and not loaded.training
    for name, tensor in lm.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    query = torch.randn(512, generator=torch.Generator().manual_seed(0))
    outputs = []
    for model in (lm, loaded):
        stream = model.new_stream(query, seed=0)
        stream.push_semantic(query.expand(5, 512))
        outputs.append(list(stream.generate(15)))
    assert outputs[0] == outputs[1]


def test_load_names_a_mis_shaped_key(tmp_path: Path) -> None:
    folder = tmp_path / "speech_lm"
    save(build_smoke(0), folder, "smoke")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["speech_embedding.weight"] = torch.zeros(4099, 128)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"speech_embedding.weight: file \(4099, 128\) != model \(6564, 128\)"):
        load(folder)


def test_load_refuses_another_stage(tmp_path: Path) -> None:
    from services.backbone import build_smoke as backbone_smoke
    from services.backbone import save as save_backbone

    save_backbone(backbone_smoke(0), tmp_path / "b", "smoke")
    with pytest.raises(WeightsError, match="holds stage 'backbone', expected 'speech_lm'"):
        load(tmp_path / "b")
