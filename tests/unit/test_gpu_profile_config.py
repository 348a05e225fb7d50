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
    assert (repository / "backbone" / "1" / "model.py").read_text().startswith('"""Triton Python model')
    assert not (repository / "tensorrt_llm").exists(), "no tensorrtllm-backend model: it cannot return hidden states"
    for stage in STAGES:
        assert (repository / stage / "1" / "model.py").read_bytes() == (
            CPU_REPOSITORY / stage / "1" / "model.py"
        ).read_bytes()


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
    assert parse((tmp_path / "repo" / "backbone" / "config.pbtxt").read_text()).backend == "python"
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
    project = [node for node in imported if node.module and node.module.startswith(("services.", "minmo_contracts."))]
    assert len(project) >= 5
    for node in project:
        module = importlib.import_module(str(node.module))
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def _params(config: mc.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def _ragged(config: mc.ModelConfig) -> dict[str, bool]:
    return {i.name: i.allow_ragged_batch for i in config.input}


def test_backbone_hands_over_the_requests_of_several_streams_like_the_cpu_backbone(repository: Path) -> None:
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
    # dtype: the GPU profile serves the stage in the values file's stage_dtype (the CPU one in float32, unset).
    assert gpu.pop("dtype") == "bfloat16" and "dtype" not in cpu
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


def test_backbone_builds_its_executor_from_the_values(repository: Path) -> None:
    """The executor the backbone model drives: engine, in-flight slots, KV cache share and reuse, GPUs."""
    from services.gpu_profile.executor_requests import ExecutorSettings

    config = gpu_config(repository, "backbone")
    params = _params(config)
    settings = ExecutorSettings(
        engine_dir=params["engine_dir"],
        max_batch_size=int(params["max_batch_size"]),
        kv_cache_free_gpu_mem_fraction=float(params["kv_cache_free_gpu_mem_fraction"]),
        enable_kv_cache_reuse=params["enable_kv_cache_reuse"] == "true",
        batch_scheduler_policy=params["batch_scheduler_policy"],
        gpu_device_ids=[int(i) for i in params["gpu_device_ids"].split(",")],
    )
    values = GpuValues.load(EXAMPLE)
    assert settings.engine_dir == values.engine_dir == "/weights/trtllm/engine/qwen2.5-7b-minmo-l20"
    assert settings.max_batch_size == values.max_batch_size == int(params["worker_threads"]) == 16
    assert settings.kv_cache_free_gpu_mem_fraction == values.kv_cache_free_gpu_mem_fraction
    assert settings.enable_kv_cache_reuse and settings.batch_scheduler_policy == "guaranteed_no_evict"
    assert settings.gpu_device_ids == [0]
    assert params["prompt_table_dtype"] == "bfloat16" and params["max_context"] == "8192"
    assert float(params["engine_response_timeout_seconds"]) > 0
    (group,) = config.instance_group
    assert group.count == 1


def test_the_backbone_runs_one_executor_process() -> None:
    with pytest.raises(ValuesError, match="instances: backbone must be 1, got 2: one process drives"):
        GpuValues.from_mapping(raw_values(instances={**raw_values()["instances"], "backbone": 2}))
    assert GpuValues.from_mapping(raw_values(max_batch_size=24)).backbone_worker_threads == 24
