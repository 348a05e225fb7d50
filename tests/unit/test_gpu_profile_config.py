"""The GPU model repository generated from one values file: valid Triton configs, the CPU contracts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from services.gpu_profile.generate import CPU_REPOSITORY, MODELS, render_configs, write_repository
from services.gpu_profile.templating import TemplateError, render, render_all
from services.gpu_profile.values import DEFAULT_MAX_STEP_BATCH, STAGES, STEP_SCHEDULED, GpuValues, ValuesError

EXAMPLE = Path(__file__).resolve().parents[2] / "services" / "gpu_profile" / "values-l20.yaml"


def raw_values(**changes: Any) -> dict[str, Any]:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(changes)
    return raw


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def cpu_config(model: str) -> mc.ModelConfig:
    return parse((CPU_REPOSITORY / model / "config.pbtxt").read_text())


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu_repo")
    write_repository(GpuValues.load(EXAMPLE), out)
    return out


def gpu_config(repository: Path, model: str) -> mc.ModelConfig:
    return parse((repository / model / "config.pbtxt").read_text())


def test_every_generated_config_is_a_valid_triton_model_config(repository: Path) -> None:
    for model in MODELS:
        config = gpu_config(repository, model)
        assert config.name == model
        assert "${" not in (repository / model / "config.pbtxt").read_text()
    assert (repository / "backbone" / "1" / "model.py").read_text().startswith('"""Triton BLS adapter')
    for stage in STAGES:
        assert (repository / stage / "1" / "model.py").read_bytes() == (
            CPU_REPOSITORY / stage / "1" / "model.py"
        ).read_bytes()


def test_tensorrt_llm_config_carries_the_values(repository: Path) -> None:
    config = gpu_config(repository, "tensorrt_llm")
    assert config.backend == "tensorrtllm"
    assert config.max_batch_size == 16
    assert config.model_transaction_policy.decoupled
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["gpt_model_path"] == "/weights/trtllm/engine/qwen2.5-7b-minmo-l20"
    assert params["kv_cache_free_gpu_mem_fraction"] == "0.35"
    assert params["enable_kv_cache_reuse"] == "true"
    assert params["batch_scheduler_policy"] == "guaranteed_no_evict"
    assert params["gpu_device_ids"] == "0"
    inputs = {i.name: i for i in config.input}
    assert {"input_ids", "input_lengths", "request_output_len", "streaming", "end_id", "pad_id"} <= set(inputs)
    assert {"temperature", "runtime_top_k", "runtime_top_p", "seed"} <= set(inputs)
    assert inputs["prompt_embedding_table"].data_type == mc.TYPE_BF16
    assert inputs["prompt_vocab_size"].data_type == mc.TYPE_INT32
    assert inputs["prompt_table_extra_ids"].data_type == mc.TYPE_UINT64
    outputs = {o.name: o for o in config.output}
    assert set(outputs) == {"output_ids", "sequence_length", "hidden_states"}
    assert outputs["hidden_states"].data_type == mc.TYPE_BF16
    assert list(outputs["hidden_states"].dims) == [-1, -1]


def test_float16_engine_switches_the_prompt_table_and_hidden_dtypes() -> None:
    config = parse(render_configs(GpuValues.from_mapping(raw_values(engine_dtype="float16")))["tensorrt_llm"])
    by_name = {t.name: t.data_type for t in [*config.input, *config.output]}
    assert by_name["prompt_embedding_table"] == by_name["hidden_states"] == mc.TYPE_FP16


def _contract(config: mc.ModelConfig) -> dict[str, Any]:
    """What a client of the model depends on; placement (instances, parameters) is not part of it."""
    return {
        "max_batch_size": config.max_batch_size,
        "decoupled": config.model_transaction_policy.decoupled,
        "inputs": [text_format.MessageToString(i) for i in config.input],
        "outputs": [text_format.MessageToString(o) for o in config.output],
        "sequence_batching": text_format.MessageToString(config.sequence_batching),
    }


@pytest.mark.parametrize("model", ["backbone", *STAGES])
def test_gpu_variant_keeps_the_cpu_contract(repository: Path, model: str) -> None:
    cpu, gpu = cpu_config(model), gpu_config(repository, model)
    assert _contract(gpu) == _contract(cpu)
    assert gpu.sequence_batching.control_input, "stream state needs the START/END controls"


@pytest.mark.parametrize("model", STAGES)
def test_stage_variants_are_placed_on_the_listed_gpus(repository: Path, model: str) -> None:
    (group,) = gpu_config(repository, model).instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU
    assert list(group.gpus) == [0]
    assert group.count == {"encoder": 1, "duplex": 1, "speech_lm": 2, "vocoder": 1}[model]
    weights = gpu_config(repository, model).parameters["weights_dir"].string_value
    assert weights == f"/weights/{model}"


def test_backbone_bls_points_at_the_engine_and_its_bounds(repository: Path) -> None:
    config = gpu_config(repository, "backbone")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["engine_model"] == "tensorrt_llm"
    assert params["max_context"] == "8192"
    assert params["max_prompt_rows"] == "4096"
    assert params["prompt_table_dtype"] == "bfloat16"
    assert config.instance_group[0].count == 2


def test_values_file_missing_or_unknown_keys_are_named() -> None:
    raw = raw_values()
    del raw["engine_dir"], raw["max_seq_len"]
    with pytest.raises(ValuesError, match="missing values: engine_dir, max_seq_len"):
        GpuValues.from_mapping(raw)
    with pytest.raises(ValuesError, match="unknown values: max_sequence_len"):
        GpuValues.from_mapping(raw_values(max_sequence_len=4096))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_batch_size": "16"}, "max_batch_size must be int"),
        ({"max_batch_size": True}, "max_batch_size must be int"),
        ({"weight_only": "fp8"}, "weight_only must be one of none, int8, int4"),
        ({"kv_cache_free_gpu_mem_fraction": 1.5}, r"kv_cache_free_gpu_mem_fraction must be in \(0, 1\]"),
        ({"max_input_len": 9000}, "max_input_len 9000 exceeds max_seq_len 8192"),
        ({"instances": {"backbon": 1}}, "instances: unknown models"),
        ({"gpu_device_ids": []}, "gpu_device_ids must name at least one GPU"),
    ],
)
def test_values_out_of_range_fail_with_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValuesError, match=message):
        GpuValues.from_mapping(raw_values(**change))


def test_strict_templating_missing_unknown_and_leftover() -> None:
    with pytest.raises(TemplateError, match="template t: missing values engine_dir"):
        render("t", 'path: "${engine_dir}" size: ${max_batch_size}', {"max_batch_size": "8"})
    with pytest.raises(TemplateError, match="unknown values \\(no template uses them\\): stale"):
        render_all({"t": "size: ${n}"}, {"n": "8", "stale": "x"})
    with pytest.raises(TemplateError, match=r"line 2 still holds '\$\{bad name\}'"):
        render("t", "a: ${n}\nb: ${bad name}", {"n": "1"})
    with pytest.raises(TemplateError, match="still holds"):
        render("t", "a: ${n}", {"n": "${injected}"})
    assert render_all({"t": "a: ${n} b: ${n}"}, {"n": "7"}) == {"t": "a: 7 b: 7"}


def test_every_template_value_is_used_so_a_renamed_placeholder_fails() -> None:
    """The shipped templates and values agree exactly (render_all would refuse an unused value)."""
    rendered = render_configs(GpuValues.load(EXAMPLE))
    assert set(rendered) == set(MODELS)


def test_cli_writes_the_repository_and_reports_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main

    assert main(["gpu", "config", "--values", str(EXAMPLE), "--out", str(tmp_path / "repo")]) == 0
    assert parse((tmp_path / "repo" / "tensorrt_llm" / "config.pbtxt").read_text()).backend == "tensorrtllm"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw_values(max_batch_size=0)))
    assert main(["gpu", "config", "--values", str(bad), "--out", str(tmp_path / "repo2")]) == 2
    assert "max_batch_size must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "repo2").exists()


def test_bls_template_imports_only_names_that_exist_in_services() -> None:
    """The BLS model.py cannot run without Triton and a GPU; at least every project name it uses resolves."""
    import ast
    import importlib

    from services.gpu_profile.generate import TEMPLATES

    tree = ast.parse((TEMPLATES / "backbone_model.py.tmpl").read_text())
    imported = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    project = [node for node in imported if node.module and node.module.startswith("services.")]
    assert len(project) >= 5
    for node in project:
        module = importlib.import_module(str(node.module))
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def _params(config: mc.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def _ragged(config: mc.ModelConfig) -> dict[str, bool]:
    return {i.name: i.allow_ragged_batch for i in config.input}


@pytest.mark.parametrize(
    ("max_batch_size", "backbones", "threads"),
    [(16, 2, 8), (16, 1, 16), (24, 3, 8), (10, 3, 4), (1, 2, 1)],
)
def test_bls_worker_threads_keep_the_engines_batch_full(max_batch_size: int, backbones: int, threads: int) -> None:
    """Each BLS request holds a worker thread while it streams: instances x threads is the engine's in-flight count."""
    raw = raw_values(max_batch_size=max_batch_size, instances={**raw_values()["instances"], "backbone": backbones})
    rendered = render_configs(GpuValues.from_mapping(raw))
    bls, engine = parse(rendered["backbone"]), parse(rendered["tensorrt_llm"])
    (group,) = bls.instance_group
    assert group.count == backbones
    assert int(_params(bls)["worker_threads"]) == threads
    in_flight = group.count * threads
    assert engine.max_batch_size <= in_flight < engine.max_batch_size + backbones


def test_l20_bls_keeps_exactly_the_engines_max_batch_size_in_flight(repository: Path) -> None:
    bls, engine = gpu_config(repository, "backbone"), gpu_config(repository, "tensorrt_llm")
    in_flight = bls.instance_group[0].count * int(_params(bls)["worker_threads"])
    assert in_flight == engine.max_batch_size == GpuValues.load(EXAMPLE).max_batch_size == 16


def test_bls_hands_over_the_requests_of_several_streams_like_the_cpu_backbone(repository: Path) -> None:
    bls, cpu = gpu_config(repository, "backbone"), cpu_config("backbone")
    assert bls.max_batch_size == cpu.max_batch_size > 1
    assert bls.sequence_batching.HasField("oldest")
    assert bls.sequence_batching.oldest.max_candidate_sequences >= bls.max_batch_size
    ragged = _ragged(bls)
    assert ragged["INPUT_IDS"] and ragged["SPEECH_EMBEDDINGS"] and ragged["SUFFIX_IDS"]
    assert ragged == _ragged(cpu)


@pytest.mark.parametrize("model", ["backbone", *STAGES])
def test_gpu_and_cpu_configs_batch_alike(repository: Path, model: str) -> None:
    """Batching settings and tensor contract, field by field, so a failure names what drifted."""
    cpu, gpu = cpu_config(model), gpu_config(repository, model)
    assert gpu.max_batch_size == cpu.max_batch_size == 16, "Triton's hand-over of several streams"
    assert gpu.model_transaction_policy.decoupled == cpu.model_transaction_policy.decoupled
    assert gpu.sequence_batching.WhichOneof("strategy_choice") == cpu.sequence_batching.WhichOneof("strategy_choice")
    assert _ragged(gpu) == _ragged(cpu)
    for ours, theirs in ((gpu.input, cpu.input), (gpu.output, cpu.output)):
        assert [(t.name, t.data_type, list(t.dims)) for t in ours] == [
            (t.name, t.data_type, list(t.dims)) for t in theirs
        ]
    assert [i.optional for i in gpu.input] == [i.optional for i in cpu.input]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_configs_give_the_shared_adapter_the_cpu_parameters(repository: Path, stage: str) -> None:
    """The GPU profile runs the CPU adapter: it must find the same parameters (and no retired worker_threads)."""
    gpu, cpu = _params(gpu_config(repository, stage)), _params(cpu_config(stage))
    assert set(gpu) == set(cpu)
    assert "worker_threads" not in gpu


def test_step_caps_come_from_the_values_file(repository: Path) -> None:
    values = GpuValues.load(EXAMPLE)
    for stage in STEP_SCHEDULED:
        assert _params(gpu_config(repository, stage))["max_step_batch"] == str(values.step_batch(stage))
    assert values.step_batch("vocoder") == 16 and values.step_batch("speech_lm") == 64
    rendered = render_configs(GpuValues.from_mapping(raw_values(max_step_batch={"vocoder": 4})))
    assert _params(parse(rendered["vocoder"]))["max_step_batch"] == "4"
    assert _params(parse(rendered["speech_lm"]))["max_step_batch"] == str(DEFAULT_MAX_STEP_BATCH)


def test_default_step_cap_is_the_cpu_profiles() -> None:
    from services.triton.serving import DEFAULT_MAX_STEP_BATCH as SERVING_DEFAULT

    assert DEFAULT_MAX_STEP_BATCH == SERVING_DEFAULT
    for stage in STEP_SCHEDULED:
        assert _params(cpu_config(stage))["max_step_batch"] == str(DEFAULT_MAX_STEP_BATCH)


@pytest.mark.parametrize(
    ("caps", "message"),
    [({"encoder": 8}, "max_step_batch: unknown models"), ({"vocoder": 0}, "every cap must be >= 1")],
)
def test_step_caps_out_of_range_fail_with_the_key(caps: dict[str, int], message: str) -> None:
    with pytest.raises(ValuesError, match=message):
        GpuValues.from_mapping(raw_values(max_step_batch=caps))


# Inputs and outputs of the TensorRT-LLM backend's own tensorrt_llm model (TensorRT-LLM's
# triton_backend/all_models/inflight_batcher_llm/tensorrt_llm/config.pbtxt, the line Triton 25.06 ships):
# the backend reads inputs by these names and ignores any other a config declares.
BACKEND_INPUTS = {
    "input_ids", "input_lengths", "request_output_len", "end_id", "pad_id", "stop_words_list",
    "bad_words_list", "embedding_bias", "beam_width", "temperature", "runtime_top_k", "runtime_top_p",
    "runtime_top_p_min", "runtime_top_p_decay", "runtime_top_p_reset_ids", "len_penalty", "early_stopping",
    "repetition_penalty", "min_tokens", "presence_penalty", "frequency_penalty", "seed", "return_log_probs",
    "return_context_logits", "return_generation_logits", "exclude_input_in_output", "stop", "streaming",
    "prompt_embedding_table", "prompt_table_extra_ids", "prompt_vocab_size",
}  # fmt: skip
BACKEND_OUTPUTS = {"output_ids", "sequence_length", "cum_log_probs", "output_log_probs", "batch_index"}


def test_engine_tensors_use_the_backends_names_and_shapes(repository: Path) -> None:
    config = gpu_config(repository, "tensorrt_llm")
    inputs = {i.name: i for i in config.input}
    assert set(inputs) <= BACKEND_INPUTS, f"unknown to the backend: {sorted(set(inputs) - BACKEND_INPUTS)}"
    assert {o.name for o in config.output} - BACKEND_OUTPUTS == {"hidden_states"}, "ours: hidden_states.py"
    for tensor in inputs.values():
        if list(tensor.dims) == [1]:
            assert tensor.HasField("reshape") and list(tensor.reshape.shape) == [], f"{tensor.name}: a scalar"


def test_every_tensor_the_bls_sends_is_declared_by_the_engine_config(repository: Path) -> None:
    import numpy as np

    from services.gpu_profile.engine_context import EngineContext
    from services.gpu_profile.trtllm_adapter import ENGINE_OUTPUTS, engine_tensors
    from services.triton.contracts import BackboneRequest

    context = EngineContext(100, 4, max_length=64, max_rows=16)
    context.append([1], np.ones((2, 4), np.float32), [2])
    job = BackboneRequest.parse(
        {"RANDOM_SEED": np.array([[7]], np.uint64), "MAX_NEW_TOKENS": np.array([[3]], np.int32)}.get,
        vocab_size=100,
        width=4,
        max_new_tokens_limit=16,
    )
    sent = engine_tensors(context.engine_input(), job, end_id=99, pad_id=98)
    config = gpu_config(repository, "tensorrt_llm")
    assert set(sent) <= {i.name for i in config.input}
    assert "seed" in sent
    assert set(ENGINE_OUTPUTS) <= {o.name for o in config.output}
