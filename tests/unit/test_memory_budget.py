"""The L20 memory budget: exact parameter counts of the minmo presets and the KV formulas by hand."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from perf.memory_budget import (
    BACKBONE_STEPS,
    EAGER,
    FP32,
    GPU_BANDWIDTH,
    REALTIME_LOAD,
    UNARY_BATCH,
    VALUES,
    WINDOW_MS,
    Budget,
    backbone_load,
    count,
    kv_bytes_per_token,
    make_budget,
    overload,
    render,
    session_bound,
    sessions_per_gpu,
    step_gpu_ms,
    vocoder_state_bytes,
    weight_bytes,
    window_load,
)
from services.backbone import Backbone, Qwen2Config
from services.gpu_profile.values import GpuValues
from services.speech_lm.model import SpeechLM, SpeechLMConfig
from services.vocoder.config import VocoderConfig
from services.vocoder.model import Token2Wav


@pytest.fixture(scope="module")
def budget() -> Budget:
    return make_budget(GpuValues.load(VALUES))


def test_backbone_parameters_match_qwen2_5_7b(budget: Budget) -> None:
    # Hugging Face's Qwen2.5-7B-Instruct: 7,615,616,512 parameters with an untied lm_head.
    assert budget.weights["backbone"].params == 7_615_616_512
    assert budget.weights["backbone"].bf16_bytes == 2 * 7_615_616_512
    # int8 weight-only quantises the decoder's linear layers, not the 152064 x 3584 embedding nor lm_head
    # (TensorRT-LLM's weight-only leaves lm_head in the engine dtype): ~8.7 GB, not 8.16.
    embedding = lm_head = 152_064 * 3584
    norms = (2 * 28 + 1) * 3584
    biases = 28 * (3584 + 2 * 512)
    kept = embedding + lm_head + norms + biases
    assert budget.weights["backbone"].int8_bytes == 2 * kept + (7_615_616_512 - kept)


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
    # int8 weight-only: lm_head (545M) stays bf16 beside the embedding table, as TensorRT-LLM leaves it.
    assert "| backbone | 7,615,616,512 | 15.23 | 8.71 |" in text
    assert "| backbone, 5 tokens | 150 | 88.1 | 50.4 |" in text
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


def test_pytorch_stages_count_as_served_once_per_instance(budget: Budget) -> None:
    """KIND_GPU Python instances are processes with their own copy, in the values file's stage_dtype (the
    vocoder's HiFT in float32, as the adapter serves it); the engine holds the backbone once."""
    values = GpuValues.load(VALUES)
    assert values.stage_dtype == budget.stage_dtype == "bfloat16" and budget.stage_bytes == 2
    with torch.device("meta"):
        hift = sum(p.numel() for p in Token2Wav(VocoderConfig.preset("minmo")).hift.parameters())
    assert budget.float32 == {"encoder": 0, "duplex": 0, "speech_lm": 0, "vocoder": hift}
    stages = sum(
        (budget.weights[name].params - budget.float32[name]) * 2 * values.instance_count(name)
        + budget.float32[name] * FP32 * values.instance_count(name)
        for name in ("encoder", "duplex", "speech_lm", "vocoder")
    )
    assert weight_bytes(budget, backbone_int8=False) == budget.weights["backbone"].bf16_bytes + stages
    assert budget.speech_lm_kv_token == kv_bytes_per_token(SpeechLMConfig.preset("minmo").body, 2)


def test_the_served_dtype_is_the_values_files(budget: Budget) -> None:
    """float32 stages (the old, uncast adapters) hold twice the bytes and fit fewer sessions."""
    fp32 = make_budget(dataclasses.replace(GpuValues.load(VALUES), stage_dtype="float32"))
    for name in ("encoder", "duplex", "speech_lm"):
        assert fp32.served_bytes(name) == 2 * budget.served_bytes(name)
    assert fp32.stream_state["vocoder"] == 2 * budget.stream_state["vocoder"]
    assert "| speech_lm | 376,092,580 | 0.75 | 0.38 | 1.50 (bf16 x 2) |" in render(budget)
    assert "(fp32 x 2)" in render(fp32) and "stage_dtype (float32;" in render(fp32)
    bf16 = sessions_per_gpu(budget, context=8192, backbone_int8=False).sessions
    assert sessions_per_gpu(fp32, context=8192, backbone_int8=False).sessions < bf16


def test_step_activations_grow_with_the_streams_a_step_batches() -> None:
    values = GpuValues.load(VALUES)
    small = make_budget(dataclasses.replace(values, max_step_batch={"vocoder": 4}))
    large = make_budget(dataclasses.replace(values, max_step_batch={"vocoder": 8}))
    # traced in float32, served in the values file's bf16: half the bytes per stream
    per_stream = EAGER["vocoder"].activation_per_stream * values.instance_count("vocoder") / 2
    assert large.activations["vocoder"] - small.activations["vocoder"] == pytest.approx(4 * per_stream, rel=1e-6)
    assert (
        sessions_per_gpu(small, context=8192, backbone_int8=False).sessions
        >= sessions_per_gpu(large, context=8192, backbone_int8=False).sessions
    )


def test_speech_lm_step_is_launch_bound_and_grows_per_stream() -> None:
    """The calibration: ~5 ms for one stream's token, ~1.2 ms more per stream (per-stream attention + sampling)."""
    step = EAGER["speech_lm"]
    assert step.host_ms(1) == pytest.approx(5.2, abs=0.1)
    assert step.host_ms(9) - step.host_ms(8) == pytest.approx(1.2, abs=0.05)
    for stage in ("encoder", "duplex", "vocoder"):  # one padded or packed pass for all streams
        assert EAGER[stage].host_ms(16) == EAGER[stage].host_ms(1)


def test_each_row_takes_the_smaller_bound_and_names_it(budget: Budget) -> None:
    for int8 in (False, True):
        for context in (4096, 8192):
            row = session_bound(budget, context=context, backbone_int8=int8)
            assert row.sessions == min(row.memory.sessions, row.compute.sessions) > 0
            assert row.bound == ("memory" if row.memory.sessions <= row.compute.sessions else "compute")
            fits = window_load(budget, row.compute.sessions, context=context, backbone_int8=int8)
            assert overload(fits) is None
            over = window_load(budget, row.compute.sessions + 1, context=context, backbone_int8=int8)
            assert overload(over) == row.compute.limit
            assert sum(load.gpu_ms for load in fits) <= REALTIME_LOAD * WINDOW_MS


def test_compute_bound_reads_weights_once_per_step_for_all_streams(budget: Budget) -> None:
    one = step_gpu_ms(budget, "speech_lm", 1)
    sixteen = step_gpu_ms(budget, "speech_lm", 16)
    assert sixteen < 16 * one, "one weight read serves every stream of the step"
    backbone = backbone_load(budget, 20, 10, context=4096, backbone_int8=False)
    weights_ms = budget.weights["backbone"].bf16_bytes / GPU_BANDWIDTH * 1000
    assert backbone.step_ms > weights_ms
    assert backbone.gpu_ms == pytest.approx(BACKBONE_STEPS * backbone.step_ms)


def test_report_says_which_bound_applies_and_that_it_is_an_estimate(budget: Budget) -> None:
    text = render(budget)
    assert "| sessions (memory) |" in text and "| sessions (compute) |" in text and "| bound |" in text
    row = session_bound(budget, context=8192, backbone_int8=False)
    assert f"| {row.compute.sessions} | {row.compute.limit} | {row.sessions} | {row.bound} |" in text
    assert "These are estimates, not GPU measurements." in text


class _CountOps(TorchDispatchMode):
    """Dispatched ATen ops, split into kernel-launching ones and views (which launch nothing)."""

    VIEWS = frozenset({
        "view", "_unsafe_view", "t", "transpose", "slice", "select", "unsqueeze", "squeeze", "expand", "as_strided",
        "alias", "detach", "split", "split_with_sizes", "permute", "reshape", "unbind", "empty", "empty_strided",
        "new_empty",
    })  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.kernels = self.views = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.overloadpacket.__name__ in self.VIEWS:
            self.views += 1
        else:
            self.kernels += 1
        return func(*args, **(kwargs or {}))


def test_speech_lm_op_counts_still_describe_the_model() -> None:
    """Re-trace the speech LM's packed step on the meta device: the calibration's op counts (model part,
    sampling excluded) must still hold within 25%, or the step changed shape and the constants are stale."""
    with torch.device("meta"):
        lm = SpeechLM(SpeechLMConfig.preset("minmo"))
    counts = []
    for streams in (1, 3):
        caches = [lm.llm.new_cache() for _ in range(streams)]
        rows = [torch.zeros(1, lm.config.width, device="meta") for _ in range(streams)]
        ops = _CountOps()
        with torch.inference_mode(), ops:
            hidden = lm.llm.forward_packed(rows, caches)
            lm.llm_decoder(torch.stack([h[-1] for h in hidden]))
        counts.append((ops.kernels, ops.views))
    step, sampling = EAGER["speech_lm"], (11, 4)  # sample_token: 11 kernels (3 of them syncs), 4 views
    per_stream = [(counts[1][i] - counts[0][i]) / 2 for i in (0, 1)]
    assert per_stream[0] == pytest.approx(step.kernels_per_stream - sampling[0], rel=0.25)
    assert per_stream[1] == pytest.approx(step.views_per_stream - sampling[1], rel=0.25)
    assert counts[0][0] - per_stream[0] == pytest.approx(step.kernels, rel=0.25)
    assert counts[0][1] - per_stream[1] == pytest.approx(step.views, rel=0.25)


def test_unary_step_batch_is_the_templates_max_batch_size() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from services.gpu_profile.generate import render_configs

    rendered = render_configs(GpuValues.load(VALUES))
    for stage in ("encoder", "duplex"):
        assert text_format.Parse(rendered[stage], mc.ModelConfig()).max_batch_size == UNARY_BATCH
