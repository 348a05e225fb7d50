"""The engine build command lines from the values file, the script's dry run, the hidden-states patch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.gpu_profile.engine import build_commands, convert_args, trtllm_build_args
from services.gpu_profile.hidden_states import HIDDEN_OUTPUT, mark_final_hidden_states, parse_args
from services.gpu_profile.hidden_states import main as hidden_states_main
from services.gpu_profile.values import GpuValues

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "services" / "gpu_profile" / "values-l20.yaml"


def values(**changes: Any) -> GpuValues:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(changes)
    return GpuValues.from_mapping(raw)


def test_convert_checkpoint_arguments() -> None:
    assert convert_args(values(), python="py") == [
        "py",
        "/app/examples/models/core/qwen/convert_checkpoint.py",
        "--model_dir",
        "/weights/hf/Qwen2.5-7B-Instruct-minmo",
        "--output_dir",
        "/weights/trtllm/checkpoint/qwen2.5-7b-minmo",
        "--dtype",
        "bfloat16",
        "--tp_size",
        "1",
    ]
    assert convert_args(values(weight_only="int8"), python="py")[-3:] == [
        "--use_weight_only",
        "--weight_only_precision",
        "int8",
    ]


def test_trtllm_build_arguments() -> None:
    assert trtllm_build_args(values(max_batch_size=8, max_prompt_rows=1000)) == [
        "--checkpoint_dir",
        "/weights/trtllm/checkpoint/qwen2.5-7b-minmo",
        "--output_dir",
        "/weights/trtllm/engine/qwen2.5-7b-minmo-l20",
        "--gemm_plugin",
        "auto",
        "--gpt_attention_plugin",
        "auto",
        "--remove_input_padding",
        "enable",
        "--paged_kv_cache",
        "enable",
        "--use_paged_context_fmha",
        "enable",
        "--max_batch_size",
        "8",
        "--max_input_len",
        "8192",
        "--max_seq_len",
        "8192",
        "--max_num_tokens",
        "8192",
        "--max_prompt_embedding_table_size",
        "8000",
        "--workers",
        "1",
    ]


def test_build_runs_trtllm_build_through_the_hidden_states_module() -> None:
    commands = build_commands(values(), python="py")
    # What the module hands to trtllm-build is exactly the generated flag list.
    assert parse_args(commands.build[3:]) == (HIDDEN_OUTPUT, trtllm_build_args(values()))
    assert commands.build[:6] == [
        "py",
        "-m",
        "services.gpu_profile.hidden_states",
        "--output-name",
        HIDDEN_OUTPUT,
        "--",
    ]
    assert commands.build[6:] == trtllm_build_args(values())


def test_script_dry_run_prints_both_commands_and_runs_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "build_trtllm_engine.sh"), "--values", str(EXAMPLE), "--dry-run", "--python", "py"],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines == [" ".join(convert_args(values(), "py")), " ".join(build_commands(values(), "py").build)]


def test_script_names_a_bad_values_file(tmp_path: Path) -> None:
    bad = tmp_path / "v.yaml"
    bad.write_text("engine_dir: /x\n")
    result = subprocess.run(
        [str(ROOT / "scripts" / "build_trtllm_engine.sh"), "--values", str(bad), "--dry-run"],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "missing values: hf_model_dir, checkpoint_dir" in result.stderr


class FakeTrtTensor:
    """Fake of a TensorRT-LLM network tensor (tensorrt_llm cannot be installed here): records mark_output."""

    dtype = "bfloat16"

    def __init__(self) -> None:
        self.marked: list[tuple[str, str]] = []

    def mark_output(self, name: str, dtype: str) -> None:
        self.marked.append((name, dtype))


class FakeMapping:
    def __init__(self, last: bool) -> None:
        self.last = last

    def is_last_pp_rank(self) -> bool:
        return self.last


class FakeDecoderBody:
    """Fake of a TensorRT-LLM decoder body (QWenModel): forward returns (states, presents) with use_cache."""

    def __init__(self, last_rank: bool = True) -> None:
        self.mapping = FakeMapping(last_rank)
        self.out = FakeTrtTensor()

    def forward(self, use_cache: bool = True) -> Any:
        return (self.out, ("presents",)) if use_cache else self.out


def test_patch_marks_the_final_states_once_and_only_on_the_last_pipeline_rank() -> None:
    cls = type("Body", (FakeDecoderBody,), {})
    mark_final_hidden_states(cls)
    mark_final_hidden_states(cls)  # idempotent: not wrapped twice
    body = cls()
    states, presents = body.forward()
    assert states is body.out
    assert presents == ("presents",)
    assert body.out.marked == [(HIDDEN_OUTPUT, "bfloat16")]
    body.forward(use_cache=False)
    assert body.out.marked == [(HIDDEN_OUTPUT, "bfloat16")] * 2
    middle = cls(last_rank=False)
    middle.forward()
    assert middle.out.marked == []


def test_build_module_without_tensorrt_llm_says_where_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("tensorrt_llm") is not None:
        pytest.skip("tensorrt_llm is installed: this test is about the environment without it")
    assert hidden_states_main(["--", "--checkpoint_dir", "/x"]) == 2
    assert "run the engine build inside the TensorRT-LLM container" in capsys.readouterr().err
