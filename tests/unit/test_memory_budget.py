"""The L20 memory budget: exact parameter counts of the minmo presets and the KV formulas by hand."""

from __future__ import annotations

import pytest

from perf.memory_budget import (
    VALUES,
    Budget,
    count,
    kv_bytes_per_token,
    make_budget,
    render,
    sessions_per_gpu,
    vocoder_state_bytes,
)
from services.backbone import Backbone, Qwen2Config
from services.gpu_profile.values import GpuValues
from services.speech_lm.model import SpeechLMConfig
from services.vocoder.config import VocoderConfig


@pytest.fixture(scope="module")
def budget() -> Budget:
    return make_budget(GpuValues.load(VALUES))


def test_backbone_parameters_match_qwen2_5_7b(budget: Budget) -> None:
    # Hugging Face's Qwen2.5-7B-Instruct: 7,615,616,512 parameters with an untied lm_head.
    assert budget.weights["backbone"].params == 7_615_616_512
    assert budget.weights["backbone"].bf16_bytes == 2 * 7_615_616_512
    # int8 weight-only quantises the linear layers (lm_head included), not the 152064 x 3584 embedding.
    embedding = 152_064 * 3584
    norms = (2 * 28 + 1) * 3584
    biases = 28 * (3584 + 2 * 512)
    assert budget.weights["backbone"].int8_bytes == 2 * (embedding + norms + biases) + (
        7_615_616_512 - embedding - norms - biases
    )


def test_stage_parameters_match_the_documented_preset_sizes(budget: Budget) -> None:
    params = {name: w.params for name, w in budget.weights.items()}
    assert params["speech_lm"] == 376_092_580  # CosyVoice 2 LM body (357.9M) + projector + heads
    assert params["duplex"] == 18_372_867  # "~18M" in the paper
    assert params["encoder"] == 798_096_992  # ~627M SAN-M encoder + ~171M input projector
    assert params["vocoder"] == 133_355_917  # ~112.5M flow + ~20.8M HiFT


def test_backbone_kv_bytes_per_token_by_hand() -> None:
    config = Qwen2Config.preset("minmo")
    assert kv_bytes_per_token(config) == 28 * 4 * 128 * 2 * 2 == 57_344
    assert kv_bytes_per_token(config, bytes_per_value=1) == 28_672
    assert 8192 * kv_bytes_per_token(config) == 469_762_048  # an 8k context: 0.47 GB


def test_speech_lm_kv_and_vocoder_state_by_hand() -> None:
    assert kv_bytes_per_token(SpeechLMConfig.preset("minmo").body) == 24 * 2 * 64 * 2 * 2
    # 56 estimator blocks x 10 Euler steps x 2 CFG branches x K,V x 512 values x 100 frames, bf16.
    assert vocoder_state_bytes(VocoderConfig.preset("minmo")) == 56 * 10 * 2 * 2 * 512 * 100 * 2


def test_int8_and_shorter_contexts_fit_more_sessions(budget: Budget) -> None:
    bf16_8k = sessions_per_gpu(budget, context=8192, backbone_int8=False)
    bf16_4k = sessions_per_gpu(budget, context=4096, backbone_int8=False)
    int8_8k = sessions_per_gpu(budget, context=8192, backbone_int8=True)
    assert 0 < bf16_8k.sessions < bf16_4k.sessions
    assert bf16_8k.sessions < int8_8k.sessions
    assert int8_8k.free_bytes - bf16_8k.free_bytes == pytest.approx(
        budget.weights["backbone"].bf16_bytes - budget.weights["backbone"].int8_bytes
    )
    assert 0 < bf16_8k.kv_fraction < 1


def test_values_file_kv_fraction_matches_the_budget_row_it_is_sized_for(budget: Budget) -> None:
    values = GpuValues.load(VALUES)
    row = sessions_per_gpu(budget, context=values.max_seq_len, backbone_int8=values.weight_only == "int8")
    assert values.kv_cache_free_gpu_mem_fraction == pytest.approx(row.kv_fraction, abs=0.01)


def test_markdown_table_holds_the_paper_figures_and_the_floors(budget: Budget) -> None:
    text = render(budget)
    assert "| backbone | 7,615,616,512 | 15.23 | 8.16 |" in text
    assert "| backbone, 5 tokens | 150 | 88.1 | 47.2 |" in text
    assert "| speech LM, 15 tokens | 70 | 13.1 | 6.6 |" in text
    for paper in ("| duplex decision | 250 |", "| token2wav, one 15-token chunk | 130 |"):
        assert paper in text
    assert "Nothing here was measured on a GPU." in text


def test_meta_counts_equal_a_materialised_smoke_model() -> None:
    """count() on the meta device is the same arithmetic as on real tensors (checked on the tiny preset)."""
    import torch

    config = Qwen2Config.preset("smoke")
    real = Backbone(config)
    with torch.device("meta"):
        meta = Backbone(config)
    assert count(meta) == count(real)
