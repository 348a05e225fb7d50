"""The Qwen2 decoder and its KV cache: presets, parameter counts, cached == uncached."""

from __future__ import annotations

import pytest
import torch

from services.backbone import Backbone, KVCache, Qwen2Config, Qwen2Model, SmokeByteTokenizer
from services.backbone.qwen2 import init_qwen2_weights
from services.common.seeding import seeded


def _tiny_model(**overrides: object) -> Qwen2Model:
    fields: dict[str, object] = dict(
        vocab_size=50,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    fields.update(overrides)
    config = Qwen2Config(**fields)  # type: ignore[arg-type]
    with seeded(3):
        model = Qwen2Model(config)
        init_qwen2_weights(model)
    return model.eval()


def test_minmo_preset_is_qwen2_5_7b_instruct_with_7_6b_parameters() -> None:
    config = Qwen2Config.preset("minmo")
    assert (config.vocab_size, config.hidden_size, config.intermediate_size) == (152064, 3584, 18944)
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (28, 28, 4)
    assert config.rope_theta == 1e6 and config.rms_norm_eps == 1e-6 and not config.tie_word_embeddings
    with torch.device("meta"):
        backbone = Backbone(config)
    # Qwen2.5-7B-Instruct's published count.
    assert sum(p.numel() for p in backbone.parameters()) == 7_615_616_512
    names = {name for name, _ in backbone.named_parameters()}
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= names
    assert "model.layers.27.self_attn.q_proj.bias" in names
    assert "model.layers.0.self_attn.o_proj.bias" not in names
    assert "model.layers.0.mlp.gate_proj.weight" in names


def test_smoke_preset_matches_the_smoke_tokenizer_and_ties_embeddings() -> None:
    config = Qwen2Config.preset("smoke")
    assert config.vocab_size == SmokeByteTokenizer().vocab_size
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (256, 4, 8)
    assert (config.num_key_value_heads, config.intermediate_size, config.tie_word_embeddings) == (2, 512, True)
    with torch.device("meta"):
        names = {name for name, _ in Backbone(config).named_parameters()}
    assert "lm_head.weight" not in names


def test_config_round_trips_and_rejects_unknown_fields() -> None:
    config = Qwen2Config.preset("minmo")
    assert Qwen2Config.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown Qwen2Config fields: sliding_window"):
        Qwen2Config.from_dict({**config.to_dict(), "sliding_window": 4096})
    with pytest.raises(ValueError, match="not a multiple"):
        Qwen2Config(10, 64, 64, 1, 4, 3)
    with pytest.raises(ValueError, match="unknown Qwen2Config preset"):
        Qwen2Config.preset("large")


@pytest.mark.parametrize("chunks", [[12], [5, 1, 1, 4, 1], [1] * 12, [7, 5]])
def test_cached_forward_equals_full_recomputation(chunks: list[int]) -> None:
    model = _tiny_model()
    x = torch.randn(sum(chunks), 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = model(x)
        cache = model.new_cache()
        pieces, start = [], 0
        for n in chunks:
            pieces.append(model(x[start : start + n], cache))
            start += n
    assert cache.length == sum(chunks)
    torch.testing.assert_close(torch.cat(pieces), full, atol=1e-5, rtol=0)


def test_rope_rotates_half_pairs_by_position_times_theta_power() -> None:
    model = _tiny_model(rope_theta=10_000.0)  # head_dim 16
    with torch.inference_mode():
        cos, sin = model._rotary(0, 40, torch.zeros(1))
    # Pair (i, i + 8) turns by position * theta^(-2i/16): the rotate-half layout of HF Qwen2.
    angle = 37 * 10_000.0 ** (-2 * 3 / 16)
    assert cos[37, 3].item() == pytest.approx(torch.tensor(angle).cos().item(), abs=1e-5)
    assert cos[37, 11].item() == pytest.approx(torch.tensor(angle).cos().item(), abs=1e-5)
    assert sin[37, 3].item() == pytest.approx(torch.tensor(angle).sin().item(), abs=1e-5)
    # Scores depend on relative position only.
    q, k = torch.randn(16), torch.randn(16)

    def rot(v: torch.Tensor, pos: int) -> torch.Tensor:
        return v * cos[pos] + torch.cat([-v[8:], v[:8]]) * sin[pos]

    assert torch.dot(rot(q, 9), rot(k, 4)).item() == pytest.approx(torch.dot(rot(q, 35), rot(k, 30)).item(), abs=1e-4)


def test_kv_cache_grows_forks_and_truncates() -> None:
    cache = KVCache(2, 2, 4, max_length=200, initial_capacity=4)
    start = cache.reserve(10)
    for layer in range(2):
        cache.write(layer, start, torch.ones(2, 10, 4), torch.ones(2, 10, 4))
    cache.commit(10)
    assert start == 0 and cache.length == 10 and cache.capacity >= 10
    twin = cache.fork()
    cache.truncate(3)
    k, _ = cache.write(0, cache.reserve(1), torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))
    cache.commit(1)
    assert cache.length == 4 and k.shape == (2, 4, 4)
    assert twin.length == 10
    twin_k, _ = twin.write(0, twin.reserve(0), torch.zeros(2, 0, 4), torch.zeros(2, 0, 4))
    assert torch.all(twin_k == 1), "writes to the original leaked into the fork"
    with pytest.raises(ValueError, match="cannot truncate"):
        cache.truncate(5)


def test_kv_cache_refuses_to_exceed_max_positions() -> None:
    model = _tiny_model(max_position_embeddings=16)
    cache = model.new_cache()
    with torch.inference_mode():
        model(torch.randn(10, 64), cache)
        with pytest.raises(ValueError, match=r"at most 16 .*; 6 positions are left"):
            model(torch.randn(7, 64), cache)
        assert cache.length == 10
        with pytest.raises(ValueError, match="exceed max_position_embeddings 16"):
            model(torch.randn(17, 64))
