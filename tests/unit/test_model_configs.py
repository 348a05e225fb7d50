"""One source for the model configs: the committed CPU repository is its definition, and the GPU profile
differs from it only where it must (listed here, with the reason)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from services.gpu_profile.generate import render_configs
from services.gpu_profile.values import GpuValues
from services.model_configs import definitions
from services.model_configs.repository import CPU_REPOSITORY, REGENERATE, cpu_config_text, stale_configs
from services.model_configs.spec import Parameter

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "services" / "gpu_profile" / "values-l20.yaml"

# Where the GPU profile (rendered from the example values) must differ from the CPU repository, and why.
# Everything else (name, backend, max_batch_size, decoupled, sequence batching, every input and output) is
# equal, and so is every parameter not named here. Comments differ too (the GPU files say they are
# generated from the values), which Triton does not read.
# - instance_group: the stages run KIND_GPU on the values file's GPUs;
# - weights_dir: the CPU config leaves it unset (MINMO_WEIGHTS_DIR), the GPU one names <weights_dir>/<stage>;
# - dtype: only the GPU serves the stages in the values file's stage_dtype;
# - max_step_batch: the values file's (the example sets the vocoder's to 16, the speech LM keeps 64).
MUST_DIFFER = {
    "encoder": {"instance_group", "parameters.weights_dir", "parameters.dtype"},
    "duplex": {"instance_group", "parameters.weights_dir", "parameters.dtype"},
    "speech_lm": {"instance_group", "parameters.weights_dir", "parameters.dtype"},
    "vocoder": {"instance_group", "parameters.weights_dir", "parameters.dtype", "parameters.max_step_batch"},
    # A different model behind the same contract (a Python model driving the TensorRT-LLM executor): its
    # parameters are its own. Its instance group is the CPU one's: one KIND_CPU instance (one process
    # drives the engine's executor; services/gpu_profile/values.py refuses another count).
    "backbone": {"parameters"},
}


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def differences(cpu: mc.ModelConfig, gpu: mc.ModelConfig, *, by_parameter: bool = True) -> set[str]:
    """The top-level fields that differ; ``parameters`` is split per key unless ``by_parameter`` is off."""
    fields = {f.name for f, _ in cpu.ListFields()} | {f.name for f, _ in gpu.ListFields()}
    found = {name for name in fields if name != "parameters" and getattr(cpu, name) != getattr(gpu, name)}
    if cpu.parameters != gpu.parameters:
        if not by_parameter:
            return found | {"parameters"}
        for key in set(cpu.parameters) | set(gpu.parameters):
            ours = cpu.parameters[key].string_value if key in cpu.parameters else None
            theirs = gpu.parameters[key].string_value if key in gpu.parameters else None
            if ours != theirs:
                found.add(f"parameters.{key}")
    return found


def test_committed_cpu_configs_are_their_definition() -> None:
    stale = stale_configs()
    assert not stale, (
        f"{', '.join(str(p.relative_to(REPO_ROOT)) for p in stale)} drifted from services/model_configs/: "
        f"edit the definition (or the contract in minmo_contracts/) and run `{REGENERATE}`"
    )


@pytest.mark.parametrize("model", list(MUST_DIFFER))
def test_gpu_configs_differ_from_the_cpu_ones_only_where_they_must(model: str) -> None:
    cpu = parse((CPU_REPOSITORY / model / "config.pbtxt").read_text())
    gpu = parse(render_configs(GpuValues.load(EXAMPLE))[model])
    assert differences(cpu, gpu, by_parameter=model != "backbone") == MUST_DIFFER[model]


def test_a_values_file_step_cap_is_the_one_more_difference() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["max_step_batch"] = {"speech_lm": 8}
    cpu = parse((CPU_REPOSITORY / "speech_lm" / "config.pbtxt").read_text())
    gpu = parse(render_configs(GpuValues.from_mapping(raw))["speech_lm"])
    assert differences(cpu, gpu) == MUST_DIFFER["speech_lm"] | {"parameters.max_step_batch"}


def test_the_gpu_generator_reads_the_same_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parameter added to a CPU definition reaches `minmo gpu config`'s output: there is no second copy."""
    encoder = definitions.CPU_CONFIGS["encoder"]
    added = dataclasses.replace(encoder, parameters=(*encoder.parameters, Parameter("warmup_chunks", "3")))
    monkeypatch.setitem(definitions.CPU_CONFIGS, "encoder", added)
    gpu = parse(render_configs(GpuValues.load(EXAMPLE))["encoder"])
    assert gpu.parameters["warmup_chunks"].string_value == "3"
    assert "warmup_chunks" in cpu_config_text("encoder")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.model_configs", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_regenerate_command_checks_and_rewrites_a_drifted_copy(tmp_path: Path) -> None:
    repository = tmp_path / "model_repository"
    shutil.copytree(CPU_REPOSITORY, repository, ignore=shutil.ignore_patterns("__pycache__"))
    assert run_cli("--check", "--repository", str(repository)).returncode == 0
    edited = repository / "vocoder" / "config.pbtxt"
    edited.write_text(
        edited.read_text().replace(
            '"max_streams" value: { string_value: "128"', '"max_streams" value: { string_value: "512"'
        )
    )
    checked = run_cli("--check", "--repository", str(repository))
    assert checked.returncode == 1
    assert f"{edited} differs from its definition: run `{REGENERATE}`" in checked.stderr
    written = run_cli("--repository", str(repository))
    assert written.returncode == 0 and f"wrote {edited}" in written.stdout
    assert edited.read_text() == (CPU_REPOSITORY / "vocoder" / "config.pbtxt").read_text()
    assert run_cli("--check", "--repository", str(repository)).returncode == 0
